"""Field errors and the 422 `Invalid` Status, worded as kube-apiserver words them.

The API server collects `field.Error`s (`staging/src/k8s.io/apimachinery/pkg/util/validation/field/
errors.go`: `Invalid`, `Required`, `NotSupported`, `TooLong`, `TooMany`, `TypeInvalid`, ...; the text is
`Error()` = `<field>: <ErrorBody()>`) and answers them with `apierrors.NewInvalid`
(`staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go`): `<Kind>[.<group>] "<name>" is invalid:
<errors>`, one error as is, several as `[e1, e2]` (duplicates dropped, `util/errors` `aggregate`),
and each error as a `cause` of the Status details. Clients and tests read those messages, so they are
copied to the letter here. Nothing here knows about any kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kmock import KubernetesError

OMIT = object()  # field.OmitValueType: the body names no value

TYPES = {
    "FieldValueNotFound": "Not found", "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value", "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value", "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long", "FieldValueTooMany": "Too many",
    "FieldValueTypeInvalid": "Invalid value",
}  # fmt: skip
WITHOUT_VALUE = {"FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong"}


class Rendered(str):
    """A bad value already printed as Go prints it (a struct's JSON in its fields' order)."""


def go_value(value: Any) -> str:
    """How ErrorBody prints a bad value: simple types with %v, strings with %q, else as JSON."""
    if isinstance(value, Rendered):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class FieldError:
    type: str
    field: str
    value: Any = OMIT
    detail: str = ""

    def body(self) -> str:
        words = TYPES[self.type]
        if self.type not in WITHOUT_VALUE and self.value is not OMIT:
            words = f"{words}: {go_value(self.value)}"
        return f"{words}: {self.detail}" if self.detail else words

    @property
    def where(self) -> str:
        return self.field or "<nil>"  # a nil field.Path (the object itself) prints so

    def __str__(self) -> str:
        return f"{self.where}: {self.body()}"


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, value, detail)


def type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueTypeInvalid", path, value, detail)


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, "", detail)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, "", detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", path, value)


def not_found(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueNotFound", path, value)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(v) for v in supported) if supported else ""
    return FieldError("FieldValueNotSupported", path, value, detail)


def too_long(path: str, max_length: int) -> FieldError:
    unit = "byte" if max_length == 1 else "bytes"
    return FieldError("FieldValueTooLong", path, "", f"may not be more than {max_length} {unit}")


def too_many(path: str, actual: int, most: int) -> FieldError:
    return FieldError("FieldValueTooMany", path, actual,
                      f"must have at most {most} {'item' if most == 1 else 'items'}")  # fmt: skip


def join(*parts: str | int) -> str:
    """field.Path: children joined by '.', indices as [i] (`spec.containers[0].name`)."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part:
            path += f".{part}" if path else part
    return path


def invalid_status(kind: str, group: str, name: str, errors: list[FieldError]) -> KubernetesError:
    """apierrors.NewInvalid: 422, reason Invalid, one cause per error."""
    messages = list(dict.fromkeys(str(e) for e in errors))
    listed = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    qualified = f"{kind}.{group}" if group else kind
    causes = [{"reason": e.type, "message": e.body(), "field": e.where} for e in errors]
    return KubernetesError(
        status=422, reason="Invalid", message=f'{qualified} "{name}" is invalid: {listed}',
        details={"name": name, **({"group": group} if group else {}), "kind": kind,
                 "causes": causes},
    )  # fmt: skip
