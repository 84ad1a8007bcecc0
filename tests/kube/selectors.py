"""Label and field selectors, parsed once per request and matched against stored objects.

Label selectors support the whole set-based grammar (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`).
Field selectors support what the real API server supports for every kind (`metadata.name`,
`metadata.namespace`) plus the few per-kind fields it documents; anything else is a 400, as there, so
an operator cannot come to rely on a selector a real cluster refuses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kmock import KubernetesError

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]

_SET_TERM = re.compile(r"^\s*(\S+?)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*([^!=\s]+)\s*(==|=|!=)\s*(\S*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([^!=\s()]+)\s*$")

# Fields that real API servers accept in fieldSelector beyond metadata.name/metadata.namespace.
EXTRA_FIELDS: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): frozenset({"spec.nodeName", "spec.restartPolicy", "status.phase", "status.podIP"}),
    ("", "events"): frozenset({
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
        "involvedObject.uid", "involvedObject.apiVersion", "reason", "type", "source",
    }),
    ("events.k8s.io", "events"): frozenset({
        "regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid", "reason", "type",
    }),
    ("", "secrets"): frozenset({"type"}),
    ("", "namespaces"): frozenset({"status.phase"}),
}  # fmt: skip


def bad_request(message: str) -> KubernetesError:
    return KubernetesError(status=400, reason="BadRequest", message=message, details={})


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside `in (...)` value lists."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def _label_term(term: str) -> Predicate:
    if match := _SET_TERM.match(term):
        key, op, values = match[1], match[2], {v.strip() for v in match[3].split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQ_TERM.match(term):
        key, op, value = match[1], match[2], match[3]
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_TERM.match(term):
        negate, key = bool(match[1]), match[2]
        return lambda labels: (key in labels) != negate
    raise bad_request(f"unable to parse requirement: {term!r}")


def label_selector(selector: str | None) -> Predicate:
    """A predicate over whole objects; an empty selector matches everything."""
    terms = [_label_term(term) for term in _split_terms(selector or "")]

    def matches(obj: Obj) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(term(labels) for term in terms)

    return matches


def _field(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, dict) and path == "source":
        value = value.get("component")
    return "" if value is None else str(value)


def field_selector(selector: str | None, group: str, plural: str) -> Predicate:
    allowed = {"metadata.name", "metadata.namespace"} | EXTRA_FIELDS.get((group, plural), set())
    terms: list[Predicate] = []
    for term in _split_terms(selector or ""):
        match = _EQ_TERM.match(term)
        if match is None:
            raise bad_request(f"invalid selector: {term!r}; can't understand {term!r}")
        path, op, value = match[1], match[2], match[3]
        if path not in allowed:
            raise bad_request(f'field label not supported: "{path}"')

        def term_matches(obj: Obj, path: str = path, op: str = op, value: str = value) -> bool:
            return (_field(obj, path) == value) != (op == "!=")

        terms.append(term_matches)
    return lambda obj: all(term(obj) for term in terms)


def selects(selector: dict[str, str] | None, labels: dict[str, str] | None) -> bool:
    """A Service/Deployment `matchLabels`-style selector; an empty selector selects nothing."""
    labels = labels or {}
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())
