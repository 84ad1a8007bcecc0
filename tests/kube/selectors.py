"""Label and field selectors, parsed once per request and matched against stored objects.

Both parsers are ports of k8s.io/apimachinery, so what a real API server refuses is refused here
with its words: label selectors by `pkg/labels/selector.go` (its lexer and recursive-descent
parser: `=`, `==`, `!=`, `in`, `notin`, `key`, `!key`, `>`/`<` on integers; keys and values checked
as label keys and values), field selectors by `pkg/fields/selector.go` (terms split on unescaped
commas and sorted, `\\` escapes, `=`, `==`, `!=`). Which fields a kind can be selected on, and how
an unsupported one is worded, follow the kind's field label conversion (`pkg/apis/core/v1/
conversion.go`): a kind with one says `field label not supported: <label>`, one without (ConfigMap,
Deployment, ...) `"<label>" is not a known field selector: only "metadata.name",
"metadata.namespace"`; custom resources say the former.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kmock import KubernetesError

from tests.kube import events
from tests.kube.fielderrors import FieldError, invalid
from tests.kube.names import is_label_key, is_label_value

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]

META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
# The field labels of the kinds that register a conversion for them.
FIELD_LABELS: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): META_FIELDS | {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                                 "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                                 "status.podIP", "status.podIPs", "status.nominatedNodeName"},
    ("", "events"): events.CORE_FIELD_LABELS,
    ("events.k8s.io", "events"): frozenset(events.FIELD_LABELS),
    ("", "secrets"): META_FIELDS | {"type"},
    ("", "services"): META_FIELDS | {"spec.clusterIP", "spec.type"},
    ("", "namespaces"): frozenset({"metadata.name", "status.phase"}),
}  # fmt: skip


def bad_request(message: str) -> KubernetesError:
    return KubernetesError(status=400, reason="BadRequest", message=message, details={})


# --- label selectors: pkg/labels/selector.go ---------------------------------------------------

SPECIAL = "=!(),><"
WHITESPACE = " \t\r\n"
OPERATORS = {")": "CLOSE", ",": "COMMA", "!": "NOT", "==": "EQEQ", "=": "EQ", ">": "GT",
             "in": "IN", "<": "LT", "!=": "NE", "notin": "NOTIN", "(": "OPEN"}  # fmt: skip
BINARY = "in, notin, =, ==, !=, gt, lt"


class _Lexer:
    """The selector's tokens, as `Lexer.Lex`: (token, literal)."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def _read(self) -> str:  # "" at the end, where Go's reads 0 (without moving)
        if self.pos < len(self.text):
            self.pos += 1
            return self.text[self.pos - 1]
        return ""

    def lex(self) -> tuple[str, str]:
        char = self._read()
        while char and char in WHITESPACE:
            char = self._read()
        if not char:
            return "END", ""
        self.pos -= 1
        return self._special() if char in SPECIAL else self._word()

    def _word(self) -> tuple[str, str]:
        word = ""
        while char := self._read():
            if char in SPECIAL or char in WHITESPACE:
                self.pos -= 1
                break
            word += char
        return OPERATORS.get(word, "ID"), word

    def _special(self) -> tuple[str, str]:
        buffer, last = "", ("", "")
        while char := self._read():
            if char not in SPECIAL:
                self.pos -= 1
                break
            buffer += char
            if buffer in OPERATORS:
                last = (OPERATORS[buffer], buffer)
            elif last[0]:
                self.pos -= 1
                break
        if not last[0]:
            return "ERROR", f"error expected: keyword found '{buffer}'"
        return last


class _Parser:
    def __init__(self, text: str) -> None:
        lexer, self.items, self.position = _Lexer(text), [], 0
        while True:
            self.items.append(lexer.lex())
            if self.items[-1][0] == "END":
                break

    def _peek(self, values: bool = True) -> tuple[str, str]:
        token, literal = self.items[self.position]
        return ("ID" if values and token in ("IN", "NOTIN") else token), literal

    def _take(self, values: bool = True) -> tuple[str, str]:
        item = self._peek(values)
        self.position += 1
        return item

    def parse(self) -> list[tuple[str, str, list[str]]]:
        requirements = []
        while True:
            token, literal = self._peek()
            if token == "END":
                return requirements
            if token not in ("ID", "NOT"):
                raise ValueError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except ValueError as exc:
                raise ValueError(f"unable to parse requirement: {exc}") from None
            token, literal = self._take()
            if token == "END":
                return requirements
            if token != "COMMA":
                raise ValueError(f"found '{literal}', expected: ',' or 'end of string'")
            if self._peek()[0] not in ("ID", "NOT"):
                raise ValueError(f"found '{self._peek()[1]}', expected: identifier after ','")

    def _requirement(self) -> tuple[str, str, list[str]]:
        token, key = self._take()
        operator = ""
        if token == "NOT":
            operator = "!"
            token, key = self._take()
        if token != "ID":
            raise ValueError(f"found '{key}', expected: identifier")
        if problems := is_label_key(key):
            raise ValueError(str(invalid("", key, "; ".join(problems))))
        if operator or self._peek()[0] in ("END", "COMMA"):
            return _requirement(key, operator or "exists", [])
        token, literal = self._take(values=False)
        ops = {
            "IN": "in",
            "NOTIN": "notin",
            "EQ": "=",
            "EQEQ": "==",
            "NE": "!=",
            "GT": ">",
            "LT": "<",
        }
        if token not in ops:
            raise ValueError(f"found '{literal}', expected: {BINARY}")
        operator = ops[token]
        values = self._set() if operator in ("in", "notin") else self._exact()
        return _requirement(key, operator, sorted(values))

    def _set(self) -> set[str]:
        token, literal = self._take()
        if token != "OPEN":
            raise ValueError(f"found '{literal}' expected: '('")
        token, literal = self._peek()
        if token == "CLOSE":
            self._take()
            return {""}
        if token not in ("ID", "COMMA"):
            raise ValueError(f"found '{literal}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            token, word = self._take()
            if token == "ID":
                values.add(word)
                after, seen = self._peek()
                if after == "CLOSE":
                    break
                if after != "COMMA":
                    raise ValueError(f"found '{seen}', expected: ',' or ')'")
            elif token == "COMMA":
                if not values or self._peek()[0] in ("CLOSE", "COMMA"):
                    values.add("")
                if self._peek()[0] == "CLOSE":
                    break
            else:
                raise ValueError(f"found '{word}', expected: ',', or identifier")
        if self._take()[0] != "CLOSE":
            raise ValueError(f"found '{literal}', expected: ')'")
        return values

    def _exact(self) -> set[str]:
        if self._peek()[0] in ("END", "COMMA"):
            return {""}
        token, literal = self._take()
        if token != "ID":
            raise ValueError(f"found '{literal}', expected: identifier")
        return {literal}


def _requirement(key: str, operator: str, values: list[str]) -> tuple[str, str, list[str]]:
    """NewRequirement's checks of the values (the key was checked by the parser)."""
    errors: list[FieldError] = []
    for i, value in enumerate(values):
        if operator in (">", "<") and not re.fullmatch(r"[+-]?[0-9]+", value):
            errors.append(invalid(f"values[{i}]", value,
                                  "for 'Gt', 'Lt' operators, the value must be an integer"))  # fmt: skip
    for i, value in enumerate(values):
        if problems := is_label_value(value):
            errors.append(invalid(f"values[{i}][{key}]", value, "; ".join(problems)))
    if errors:
        texts = list(dict.fromkeys(str(e) for e in errors))
        raise ValueError(texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]")
    return key, operator, values


def _matches(requirement: tuple[str, str, list[str]], labels: dict[str, str]) -> bool:
    key, operator, values = requirement
    if operator in ("in", "=", "=="):
        return key in labels and labels[key] in values
    if operator in ("notin", "!="):
        return key not in labels or labels[key] not in values
    if operator in ("exists", "!"):
        return (key in labels) == (operator == "exists")
    try:
        value, bound = int(labels[key]), int(values[0])
    except (KeyError, ValueError):
        return False
    return value > bound if operator == ">" else value < bound


def label_selector(selector: str | None) -> Predicate:
    """A predicate over whole objects; an empty selector matches everything."""
    try:
        requirements = _Parser(selector or "").parse()
    except ValueError as exc:
        raise bad_request(str(exc)) from None

    def matches(obj: Obj) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(_matches(requirement, labels) for requirement in requirements)

    return matches


# --- field selectors: pkg/fields/selector.go -----------------------------------------------------


def _split_terms(selector: str) -> list[str]:
    """splitTerms: on commas that are not escaped."""
    terms, current, escaped = [], "", False
    for char in selector:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(current)
            current = ""
            continue
        current += char
    return [*terms, current] if selector else []


def _unescape(value: str) -> str:
    result, escaped = "", False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise bad_request(f"invalid field selector: invalid escape sequence: \\{char}")
            result, escaped = result + char, False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise bad_request(f"invalid field selector: unescaped character in value: {ord(char)}")
        else:
            result += char
    if escaped:
        raise bad_request("invalid field selector: invalid escape sequence: \\")
    return result


def _field(obj: Obj, path: str) -> str:
    if obj.get("kind") == "Event":
        return events.selectable_field(obj, path)
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_selector(
    selector: str | None, group: str, plural: str, *, builtin: bool = True
) -> Predicate:
    """A predicate over stored objects; events.k8s.io/v1 names its fields in its own words."""
    renamed = events.FIELD_LABELS if (group, plural) == ("events.k8s.io", "events") else {}
    allowed = FIELD_LABELS.get((group, plural))
    terms: list[tuple[str, bool, str]] = []
    for term in sorted(_split_terms(selector or "")):
        if not term:
            continue
        split = next(((i, op) for i in range(len(term)) for op in ("!=", "==", "=")
                      if term.startswith(op, i)), None)  # fmt: skip
        if split is None:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        (at, op), label = split, term[: split[0]]
        terms.append((label, op == "!=", _unescape(term[at + len(op) :])))
    for label, _, _ in terms:
        if allowed is None and builtin and label not in META_FIELDS:
            raise bad_request(f'"{label}" is not a known field selector: only "metadata.name", '
                              '"metadata.namespace"')  # fmt: skip
        if (allowed is not None and label not in allowed) or (
            not builtin and label not in META_FIELDS
        ):
            raise bad_request(f"field label not supported: {label}")
    checks = [(renamed.get(label, label), negate, value) for label, negate, value in terms]
    return lambda obj: all((_field(obj, path) == value) != negate for path, negate, value in checks)


def selects(selector: dict[str, str] | None, labels: dict[str, str] | None) -> bool:
    """A Service/Deployment `matchLabels`-style selector; an empty selector selects nothing."""
    labels = labels or {}
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())
