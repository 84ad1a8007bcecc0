"""The structural schema of a custom resource, applied as k8s.io/apiextensions-apiserver applies it.

On every decode (a request body, a patched object, an object read from storage) the API server
(`pkg/apiserver/customresource_handler.go` `unstructuredSchemaCoercer.apply` and
`unstructuredDefaulter.Default`) runs, in this order:

1. `prune` (`pkg/apiserver/schema/pruning/algorithm.go` `prune`): fields the schema does not
   declare are dropped, except under `x-kubernetes-preserve-unknown-fields` and in the root's
   apiVersion/kind/metadata;
2. `prune_nulls` (`pkg/apiserver/schema/defaulting/prunenulls.go`
   `PruneNonNullableNullsWithoutDefaults`): a `null` member whose schema is not `nullable` and has no
   `default` is dropped (null *list items* are not: validation refuses them);
3. `default` (`pkg/apiserver/schema/defaulting/algorithm.go` `Default`): absent members with a
   `default` get it, and so do `null`s where the schema is not `nullable`.

`validate` is the OpenAPI v3 validation that follows (`k8s.io/kube-openapi/pkg/validation/validate`
`SchemaValidator`: type (and `nullable`), string, format, number, array, enum and object checks, in
that order per node) with the errors translated as `pkg/apiserver/validation/validation.go`
`kubeOpenAPIResultToFieldErrors` translates them. Properties are visited in name order (Go's map
order is random, so the API server lists several errors in no fixed order).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import re
import uuid
from typing import Any

from tests.kube.fielderrors import (
    FieldError,
    invalid,
    not_supported,
    required,
    too_long,
    too_many,
    type_invalid,
)

Obj = dict[str, Any]
META_FIELDS = ("apiVersion", "kind", "metadata")


# --- decoding: prune, prune nulls, default -------------------------------------------------------


def prune(value: Any, schema: Obj | None, *, root: bool = False) -> None:
    """Drop undeclared fields in place (pruning/algorithm.go `prune` / `skipPrune`)."""
    if schema is not None and schema.get("x-kubernetes-preserve-unknown-fields"):
        _descend(value, schema, keep_unknown=True, root=root)
        return
    _descend(value, schema, keep_unknown=False, root=root)


def _descend(value: Any, schema: Obj | None, *, keep_unknown: bool, root: bool) -> None:
    embedded = root or bool(schema and schema.get("x-kubernetes-embedded-resource"))
    if isinstance(value, dict):
        for key in list(value):
            if embedded and key in META_FIELDS:
                continue
            child = _member_schema(schema, key)
            if child is not None:
                prune(value[key], child)
            elif not keep_unknown:
                del value[key]
    elif isinstance(value, list):
        items = (schema or {}).get("items")
        for item in value:
            if keep_unknown:
                _descend(item, items, keep_unknown=True, root=False)  # skipPrune goes on in lists
            else:
                prune(item, items)


def _member_schema(schema: Obj | None, key: str) -> Obj | None:
    if schema is None:
        return None
    if key in (schema.get("properties") or {}):
        return schema["properties"][key]
    additional = schema.get("additionalProperties")
    return additional if isinstance(additional, dict) else None


def prune_nulls(value: Any, schema: Obj | None) -> None:
    """Drop `null` members that are neither nullable nor defaulted (prunenulls.go)."""
    if isinstance(value, dict):
        for key in list(value):
            child = _member_schema(schema, key)
            if value[key] is None and child is not None and not child.get("nullable") \
                    and child.get("default") is None:  # fmt: skip
                del value[key]
            else:
                prune_nulls(value[key], child)
    elif isinstance(value, list):
        items = (schema or {}).get("items")
        for item in value:
            prune_nulls(item, items)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def default(value: Any, schema: Obj | None) -> None:
    """Fill defaults in place (defaulting/algorithm.go `Default`), depth first from the top."""
    if schema is None:
        return
    if isinstance(value, dict):
        for key, prop in (schema.get("properties") or {}).items():
            if prop.get("default") is not None and (
                key not in value or (value[key] is None and not prop.get("nullable"))
            ):
                value[key] = _copy(prop["default"])
        additional = schema.get("additionalProperties")
        for key in value:
            if key in (schema.get("properties") or {}):
                default(value[key], schema["properties"][key])
            elif isinstance(additional, dict):
                if value[key] is None and not additional.get("nullable"):
                    value[key] = _copy(additional.get("default"))
                default(value[key], additional)
    elif isinstance(value, list):
        items = schema.get("items")
        for i, item in enumerate(value):
            if item is None and items is not None and not items.get("nullable"):
                value[i] = _copy(items.get("default"))
            default(value[i], items)


def decode(obj: Obj, schema: Obj) -> None:
    """What every decode of the object does, in the API server's order."""
    prune(obj, schema, root=True)
    prune_nulls(obj, schema)
    default(obj, schema)


# --- OpenAPI v3 validation ------------------------------------------------------------------------


def type_name(value: Any) -> str:
    """validate/type.go `schemaInfoForType`, for JSON values."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def go_number(value: float | int) -> str:
    """Go's %v of a float64: integral values without a fraction."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _date_time(text: str) -> bool:
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return "T" in text.upper() or " " in text


def _parses(parse: Any) -> Any:
    def check(text: str) -> bool:
        try:
            parse(text)
        except ValueError:
            return False
        return True

    return check


FORMATS = {  # strfmt.Default, for the formats the API server keeps (validation/formats.go)
    "datetime": _date_time,
    "date": _parses(datetime.date.fromisoformat),
    "uuid": lambda s: re.fullmatch(r"(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", s) is not None,
    "ipv4": _parses(ipaddress.IPv4Address),
    "ipv6": _parses(ipaddress.IPv6Address),
    "cidr": _parses(lambda s: ipaddress.ip_network(s, strict=False)),
    "byte": _parses(lambda s: base64.b64decode(s, validate=True)),
    "hostname": lambda s: len(s) <= 255 and re.fullmatch(
        r"(?i)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*\.?", s) is not None,
}  # fmt: skip
del uuid  # the regex is the rule, not Python's parser


def _types(schema: Obj) -> list[str]:
    if schema.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    return [schema["type"]] if schema.get("type") else []


def validate(value: Any, schema: Obj, path: str = "", prefix: str = "") -> list[FieldError]:
    """The field errors of `value` against `schema`; `path` is where kube-openapi stands (the names
    in its messages), `prefix` what the API server puts before it in the field path (`status` for the
    status subresource, whose schema is validated on its own)."""
    field = f"{prefix}.{path.lstrip('.')}" if prefix and path else prefix or path.lstrip(".")
    errs: list[FieldError] = []
    types = _types(schema)
    if value is None:
        if types and not schema.get("nullable"):
            errs.append(
                type_invalid(
                    field, "null", f'{path} in body must be of type {",".join(types)}: "null"'
                )
            )
        if schema.get("enum") and None not in schema["enum"]:
            errs.append(not_supported(field, None, [_enum_word(v) for v in schema["enum"]]))
        return errs
    actual = type_name(value)
    integral_float = actual == "number" and float(value).is_integer() and "integer" in types
    if (
        types
        and actual not in types
        and not integral_float
        and not (actual == "integer" and "number" in types)
    ):
        errs.append(
            type_invalid(
                field, actual, f'{path} in body must be of type {",".join(types)}: "{actual}"'
            )
        )
    if isinstance(value, str):
        errs += _validate_string(value, schema, path, field)
    elif actual in ("integer", "number"):
        errs += _validate_number(value, schema, path, field)
    elif isinstance(value, list):
        errs += _validate_array(value, schema, path, prefix, field)
    if schema.get("enum") and not any(_same(value, v) for v in schema["enum"]):
        errs.append(not_supported(field, value, [_enum_word(v) for v in schema["enum"]]))
    if isinstance(value, dict):
        errs += _validate_object(value, schema, path, prefix, field)
    return errs


def _same(value: Any, allowed: Any) -> bool:
    """validate/validator.go basicCommonValidator: numbers compare as numbers, else same type."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (
            isinstance(allowed, int | float) and not isinstance(allowed, bool) and value == allowed
        )
    return type(value) is type(allowed) and value == allowed


def _enum_word(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _validate_string(value: str, schema: Obj, path: str, field: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errs.append(too_long(field, schema["maxLength"]))
    elif "minLength" in schema and len(value) < schema["minLength"]:
        errs.append(
            invalid(
                field, value, f"{path} in body should be at least {schema['minLength']} chars long"
            )
        )
    elif "pattern" in schema and re.search(schema["pattern"], value) is None:
        errs.append(invalid(field, value, f"{path} in body should match '{schema['pattern']}'"))
    fmt = (schema.get("format") or "").replace("-", "")
    if fmt in FORMATS and set(_types(schema)) <= {"string"} and not FORMATS[fmt](value):
        errs.append(
            type_invalid(
                field, value, f'{path} in body must be of type {schema["format"]}: "{value}"'
            )
        )
    return errs


def _validate_number(value: float, schema: Obj, path: str, field: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if "multipleOf" in schema and (value / schema["multipleOf"]) % 1:
        errs.append(
            invalid(
                field,
                value,
                f"{path} in body should be a multiple of {go_number(schema['multipleOf'])}",
            )
        )
    if "maximum" in schema:
        most, exclusive = schema["maximum"], schema.get("exclusiveMaximum", False)
        if value > most or (exclusive and value == most):
            words = "less than" if exclusive else "less than or equal to"
            errs.append(
                invalid(field, value, f"{path} in body should be {words} {go_number(most)}")
            )
    if "minimum" in schema:
        least, exclusive = schema["minimum"], schema.get("exclusiveMinimum", False)
        if value < least or (exclusive and value == least):
            words = "greater than" if exclusive else "greater than or equal to"
            errs.append(
                invalid(field, value, f"{path} in body should be {words} {go_number(least)}")
            )
    return errs


def _validate_array(
    value: list[Any], schema: Obj, path: str, prefix: str, field: str
) -> list[FieldError]:
    errs: list[FieldError] = []
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            errs += validate(item, items, f"{path}[{i}]", prefix)
    if "minItems" in schema and len(value) < schema["minItems"]:
        errs.append(
            invalid(
                field, len(value), f"{path} in body should have at least {schema['minItems']} items"
            )
        )
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errs.append(too_many(field, len(value), schema["maxItems"]))
    if schema.get("uniqueItems") and any(v in value[:i] for i, v in enumerate(value)):
        errs.append(invalid(field, "", f"{path} in body shouldn't contain duplicates"))
    return errs


def _validate_object(
    value: Obj, schema: Obj, path: str, prefix: str, field: str
) -> list[FieldError]:
    errs: list[FieldError] = []
    properties = schema.get("properties") or {}
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errs.append(
            invalid(
                field,
                len(value),
                f"{path} in body should have at least {schema['minProperties']} properties",
            )
        )
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errs.append(too_many(field, len(value), schema["maxProperties"]))
    additional = schema.get("additionalProperties")
    for key in sorted(value):
        child = f"{path}.{key}" if path else key
        if key in properties:
            errs += validate(value[key], properties[key], child, prefix)
        elif isinstance(additional, dict):
            errs += validate(value[key], additional, f"{path}.{key}", prefix)
    for key in schema.get("required") or []:
        if key not in value:
            name = f"{path}.{key}".lstrip(".")
            errs.append(required(f"{prefix}.{name}" if prefix else name))
    return errs
