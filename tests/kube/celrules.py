"""`x-kubernetes-validations` CEL rules of a custom resource, evaluated as the API server does.

Follows `pkg/apiserver/schema/cel/validation.go` (k8s.io/apiextensions-apiserver) `Validator.validate`:
each schema node's rules run with `self` bound to the node's value (nulls are not validated); at the
root `self.metadata` shows only `name` and `generateName` (`model.WithTypeAndObjectMeta`); transition
rules (those reading `oldSelf`) run only on an update where the node has an old value (object
members correlate unless `x-kubernetes-map-type: atomic`; list items do not, except map lists, which
the emulator does not correlate); a rule that fails gives `field.Invalid(path, value, message)` with
the value left out for objects and lists, `message`, `messageExpression`, `reason` and `fieldPath`
honoured; on an update an unchanged node's failure is not an error (CRD validation ratcheting, GA in
1.33). Evaluation uses cel-python, so the text of a rule's *runtime* error (a missing key, ...) is
cel-python's, not cel-go's; rule results and the messages of failing rules are the API server's.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import celpy
from celpy import celtypes
from celpy.evaluation import CELEvalError

from tests.kube.fielderrors import OMIT, FieldError, duplicate, forbidden, invalid, join, required

Obj = dict[str, Any]
MISSING = object()
_ENV = celpy.Environment()


def _sum(items: Any) -> Any:
    """`<list>.sum()` of Kubernetes' CEL list library (k8s.io/apiserver/pkg/cel/library/lists.go),
    which cel-python lacks: the sum of a list of numbers or durations, 0 for an empty list."""
    values = list(items)
    total = values[0] if values else celtypes.IntType(0)
    for value in values[1:]:
        total = total + value
    return total


@functools.cache
def _program(source: str) -> celpy.Runner:
    return _ENV.program(_ENV.compile(source), functions={"sum": _sum})


def _uses_old_self(rule: str) -> bool:
    return re.search(r"\boldSelf\b", rule) is not None


def _root_view(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    return {**obj, "metadata": {k: meta[k] for k in ("name", "generateName") if k in meta}}


def validate_rules(obj: Obj, schema: Obj, old: Obj | None = None) -> list[FieldError]:
    """The rule failures of a whole custom resource (`old`: the stored object, on an update)."""
    return _validate(_root_view(obj), schema, "", MISSING if old is None else _root_view(old))


def _validate(value: Any, schema: Obj, path: str, old: Any) -> list[FieldError]:
    if value is None:
        return []
    errs = _rules(value, schema, path, old)
    if isinstance(value, dict):
        correlate = schema.get("x-kubernetes-map-type") != "atomic" and isinstance(old, dict)
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key in sorted(value):
            sub = properties.get(key, additional if isinstance(additional, dict) else None)
            if sub is not None:
                was = old.get(key, MISSING) if correlate else MISSING
                errs += _validate(value[key], sub, join(path, key), was)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errs += _validate(item, schema["items"], f"{path}[{i}]", MISSING)
    return errs


def _rules(value: Any, schema: Obj, path: str, old: Any) -> list[FieldError]:
    errs: list[FieldError] = []
    for rule in schema.get("x-kubernetes-validations") or []:
        source = rule["rule"]
        transition = _uses_old_self(source)
        if transition and old is MISSING:
            continue  # transition rules need a comparable old value
        context = {"self": celpy.json_to_cel(value)}
        if transition:
            context["oldSelf"] = celpy.json_to_cel(old)
        shown = (rule.get("message") or source).strip()
        try:
            result = _program(source).evaluate(context)
        except CELEvalError as exc:
            errs.append(
                invalid(path, schema.get("type", ""), f"{_cel_error(exc)} evaluating rule: {shown}")
            )
            continue
        if result is True or bool(result) is True:
            continue
        if not transition and old is not MISSING and old == value:
            continue  # ratcheting: a node that did not change keeps passing
        errs.append(_failure(value, schema, path, rule, context))
    return errs


def _cel_error(exc: CELEvalError) -> str:
    text, kind = exc.args[0], exc.args[1] if len(exc.args) > 1 else None
    key = re.search(r"'([^']*)'", str(text))
    if kind is KeyError and key:
        return f"no such key: {key[1]}"
    return str(text)


def _failure(value: Any, schema: Obj, path: str, rule: Obj, context: dict[str, Any]) -> FieldError:
    detail = ""
    if rule.get("messageExpression"):
        try:
            detail = str(_program(rule["messageExpression"]).evaluate(context)).strip()
        except CELEvalError:
            detail = ""
    if not detail:
        detail = (
            rule["message"].strip()
            if rule.get("message")
            else f"failed rule: {rule['rule'].strip()}"
        )
    where = join(path, *[p for p in (rule.get("fieldPath") or "").split(".") if p])
    shown = OMIT if schema.get("type") in ("object", "array") else value
    reason = rule.get("reason")
    if reason == "FieldValueForbidden":
        return forbidden(where, detail)
    if reason == "FieldValueRequired":
        return required(where, detail)
    if reason == "FieldValueDuplicate":
        return duplicate(where, shown)
    return invalid(where, shown, detail)
