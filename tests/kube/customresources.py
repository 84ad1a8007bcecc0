"""What the API server does to a custom resource between a request and storage, and on every read.

Decoding (`schema.decode`: prune unknown fields, prune non-nullable nulls, default) runs on the
request body, on the result of a patch and on the object read from storage
(`pkg/apiserver/customresource_handler.go`: `schemaCoercingDecoder` + `unstructuredDefaulter` on
both the request codec and the storage codec), so a default added to the schema shows on objects
stored before it. Validation follows `pkg/registry/customresource/strategy.go` (`Validate`,
`ValidateUpdate`) and `status_strategy.go` (`ValidateUpdate`): the whole object against the schema
on create and update, only `status` against its own schema on a status write; then the CEL rules,
unless an error already "blocks" them (`hasBlockingErr`). On an update, errors where the value did
not change are dropped (CRD validation ratcheting, `pkg/apiserver/validation/ratcheting.go`).
"""

from __future__ import annotations

import re
from typing import Any

from tests.kube.celrules import MISSING, validate_rules
from tests.kube.fielderrors import FieldError, invalid
from tests.kube.schema import decode, validate

Obj = dict[str, Any]
BLOCKING = {"FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong",
            "FieldValueTooMany", "FieldValueTypeInvalid"}  # fmt: skip
BLOCKED = invalid("", None, "some validation rules were not checked because the object was invalid; "
                  "correct the existing errors to complete validation")  # fmt: skip


def decode_custom_resource(schema: Obj | None, obj: Obj) -> None:
    if schema is not None:
        decode(obj, schema)


def _node(value: Any, segments: list[str | int]) -> Any:
    for segment in segments:
        if isinstance(segment, str) and isinstance(value, dict) and segment in value:
            value = value[segment]
        else:
            return MISSING
    return value


def _segments(field: str) -> list[str | int]:
    return [int(i) if i else k for k, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field)]


def _unchanged(error: FieldError, new: Obj, old: Obj) -> bool:
    """Ratcheting: the error's node (its parent for a missing required member) equals the old one;
    list items do not correlate, so an error inside a list compares the whole list."""
    segments = _segments(error.field)
    if error.type == "FieldValueRequired":
        segments = segments[:-1]
    first_index = next((i for i, s in enumerate(segments) if isinstance(s, int)), len(segments))
    segments = segments[:first_index]
    return _node(new, segments) == _node(old, segments)


def validate_custom_resource(
    schema: Obj, obj: Obj, old: Obj | None, *, status_only: bool, earlier: list[FieldError]
) -> list[FieldError]:
    """Schema and CEL errors of `obj` (after `earlier` ones, e.g. of its metadata)."""
    if status_only:
        status_schema = (schema.get("properties") or {}).get("status")
        errs = (
            validate(obj["status"], status_schema, "", "status")
            if status_schema and "status" in obj
            else []
        )
    else:
        errs = validate(obj, schema)
    if old is not None:
        errs = [e for e in errs if not _unchanged(e, obj, old)]
    errs = earlier + errs
    if any(e.type in BLOCKING for e in errs):
        return [*errs, BLOCKED]
    return errs + validate_rules(obj, schema, old)
