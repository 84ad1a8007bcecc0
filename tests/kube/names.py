"""Names, labels and annotations as kube-apiserver checks them, with its messages.

The string checks copy `staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go`
(`IsDNS1123Subdomain`, `IsDNS1123Label`, `IsDNS1035Label`, `IsValidPortName`, `IsValidPortNum`,
`IsEnvVarName`) and `pkg/api/validate/content/kube.go` (`IsLabelKey`, `IsLabelValue`); object metadata
follows `pkg/api/validation/objectmeta.go` `ValidateObjectMetaAccessor` (name or generateName, the
namespace, labels, annotation keys and their 256 KiB total `TotalAnnotationSizeLimitB`).

Where Kubernetes relaxed a rule in a later version, the emulator keeps the rule of the oldest version
the chart supports (1.31), because the operator must work there: Service names are DNS-1035 labels
(`RelaxedServiceNameValidation` made them DNS-1123 labels from 1.36) and env var names must pass
`IsEnvVarName` (`RelaxedEnvironmentVariableValidation` allows any printable ASCII but '=' from 1.32).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from tests.kube.fielderrors import (
    FieldError,
    Rendered,
    forbidden,
    invalid,
    join,
    required,
    too_long,
)

LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
SUBDOMAIN_FMT = LABEL_FMT + "(\\." + LABEL_FMT + ")*"
DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
VALUE_FMT = "(" + KEY_FMT + ")?"
ENV_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * (1 << 10)
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                 "'-' or '.', and must start and end with an alphanumeric character")  # fmt: skip
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
             "and must start and end with an alphanumeric character")  # fmt: skip
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
               "with an alphabetic character, and end with an alphanumeric character")  # fmt: skip
KEY_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
           "alphanumeric character")  # fmt: skip
VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
             "or '.', and must start and end with an alphanumeric character")  # fmt: skip
ENV_MSG = ("a valid environment variable name must consist of alphabetic characters, digits, '_', "
           "'-', or '.', and must not start with a digit")  # fmt: skip


def regex_error(message: str, fmt: str, *examples: str) -> str:
    shown = "".join(f"{' or ' if i else ''}'{e}', " for i, e in enumerate(examples))
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def _matches(fmt: str, value: str) -> bool:
    return re.fullmatch(fmt, value) is not None


def is_dns1123_subdomain(value: str, unit: str = "characters") -> list[str]:
    """util/validation says "characters", its copy in api/validate/content "bytes"."""
    errs = [f"must be no more than 253 {unit}"] if len(value) > 253 else []
    if not _matches(SUBDOMAIN_FMT, value):
        errs.append(regex_error(SUBDOMAIN_MSG, SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1123_label(value: str) -> list[str]:
    errs = ["must be no more than 63 characters"] if len(value) > 63 else []
    if not _matches(LABEL_FMT, value):
        errs.append("must not contain dots" if _matches(SUBDOMAIN_FMT, value)
                    else regex_error(LABEL_MSG, LABEL_FMT, "my-name", "123-abc"))  # fmt: skip
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = ["must be no more than 63 characters"] if len(value) > 63 else []
    if not _matches(DNS1035_FMT, value):
        errs.append(regex_error(DNS1035_MSG, DNS1035_FMT, "my-name", "abc-123"))
    return errs


def is_label_key(value: str) -> list[str]:
    """content.IsLabelKey (a "qualified name"): an optional DNS subdomain prefix and '/'."""
    parts = value.split("/")
    errs: list[str] = []
    if len(parts) > 2:
        return [f"a valid label key {regex_error(KEY_MSG, KEY_FMT, 'MyName', 'my.name', '123-abc')}"
                " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]  # fmt: skip
    name = parts[-1]
    if len(parts) == 2:
        if not parts[0]:
            errs.append("prefix part must be non-empty")
        else:
            errs += [f"prefix part {m}" for m in is_dns1123_subdomain(parts[0], "bytes")]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not _matches(KEY_FMT, name):
        errs.append(f"name part {regex_error(KEY_MSG, KEY_FMT, 'MyName', 'my.name', '123-abc')}")
    return errs


def is_label_value(value: str) -> list[str]:
    errs = ["must be no more than 63 bytes"] if len(value) > 63 else []
    if not _matches(VALUE_FMT, value):
        errs.append(regex_error(VALUE_MSG, VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_env_var_name(value: str) -> list[str]:
    errs = [] if _matches(ENV_FMT, value) else [
        regex_error(ENV_MSG, ENV_FMT, "my.env-name", "MY_ENV.NAME", "MyEnvName1")]  # fmt: skip
    if value in (".", ".."):
        errs.append(f"must not be '{value}'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_valid_port_name(port: str) -> list[str]:
    errs = ["must be no more than 15 characters"] if len(port) > 15 else []
    if not _matches("[-a-z0-9]+", port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port[:1] == "-" or port[-1:] == "-":
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_port_num(port: Any) -> list[str]:
    ok = isinstance(port, int) and 1 <= port <= 65535
    return [] if ok else ["must be between 1 and 65535, inclusive"]


def is_path_segment_name(name: str) -> list[str]:
    """path.IsValidPathSegmentName: the name rule of kinds without one of their own."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


# --- object metadata -------------------------------------------------------------------------------

NameCheck = Callable[[str], list[str]]


def _mask_trailing_dash(name: str) -> str:
    """generic.go maskTrailingDash: a generateName may end in '-' (a suffix follows)."""
    return name[:-2] + "a" if len(name) > 1 and name.endswith("-") else name


def validate_labels(labels: Mapping[str, Any], path: str) -> list[FieldError]:
    """meta/v1/validation ValidateLabels (sorted: Go's map order is random)."""
    errs = []
    for key in sorted(labels):
        errs += [invalid(path, key, m) for m in is_label_key(key)]
        value = labels[key]
        errs += [invalid(path, value, m) for m in is_label_value(str(value))]
    return errs


def validate_annotations(annotations: Mapping[str, Any], path: str) -> list[FieldError]:
    errs = [invalid(path, key, m) for key in sorted(annotations) for m in is_label_key(key.lower())]
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def validate_object_meta(
    meta: Mapping[str, Any], namespaced: bool, name_check: NameCheck
) -> list[FieldError]:
    """ValidateObjectMetaAccessor, after the name was generated from generateName."""
    errs: list[FieldError] = []
    generate = meta.get("generateName") or ""
    if generate:
        path = join("metadata", "generateName")
        errs += [invalid(path, generate, m) for m in name_check(_mask_trailing_dash(generate))]
    name = meta.get("name") or ""
    if not name:
        errs.append(required(join("metadata", "name"), "name or generateName is required"))
    else:
        errs += [invalid(join("metadata", "name"), name, m) for m in name_check(name)]
    namespace = meta.get("namespace") or ""
    if namespaced and not namespace:
        errs.append(required(join("metadata", "namespace")))
    elif namespaced:
        errs += [invalid(join("metadata", "namespace"), namespace, m)
                 for m in is_dns1123_label(namespace)]  # fmt: skip
    elif namespace:
        errs.append(forbidden(join("metadata", "namespace"), "not allowed on this type"))
    errs += validate_labels(meta.get("labels") or {}, join("metadata", "labels"))
    errs += validate_annotations(meta.get("annotations") or {}, join("metadata", "annotations"))
    errs += validate_owner_references(meta.get("ownerReferences") or [])
    for finalizer in meta.get("finalizers") or []:
        errs += [
            invalid(join("metadata", "finalizers"), finalizer, m) for m in is_label_key(finalizer)
        ]
    return errs


STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")


def kube_finalizer_errors(meta: Mapping[str, Any]) -> list[FieldError]:
    """What core/validation adds for the built-in kinds (`validateKubeFinalizerName`): a
    finalizer without a '/' must be one of the standard ones."""
    return [
        invalid(join("metadata", "finalizers", i), f,
                "name is neither a standard finalizer name nor is it fully qualified")
        for i, f in enumerate(meta.get("finalizers") or [])
        if "/" not in f and f not in STANDARD_FINALIZERS
    ]  # fmt: skip


def _owner_json(ref: Mapping[str, Any]) -> str:
    """An OwnerReference as Go's JSON encoding prints it (its fields in the struct's order)."""
    fields = [(k, ref.get(k) or "") for k in ("apiVersion", "kind", "name", "uid")]
    fields += [(k, ref[k]) for k in ("controller", "blockOwnerDeletion") if ref.get(k) is not None]
    return "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in fields) + "}"


def validate_owner_references(refs: list[Mapping[str, Any]]) -> list[FieldError]:
    """ValidateOwnerReferences: each reference's fields, no core v1 Event as an owner
    (`BannedOwners`), and at most one controller."""
    path = join("metadata", "ownerReferences")
    errs: list[FieldError] = []
    controller = ""
    for i, ref in enumerate(refs):
        group, _, version = str(ref.get("apiVersion") or "").rpartition("/")
        present = {"apiVersion": version, "kind": ref.get("kind"), "name": ref.get("name"),
                   "uid": ref.get("uid")}  # fmt: skip
        errs += [
            required(join(path, i, k), "must not be empty") for k, v in present.items() if not v
        ]
        if (group, version, ref.get("kind")) == ("", "v1", "Event"):
            errs.append(invalid(join(path, i), Rendered(_owner_json(ref)),
                                "/v1, Kind=Event is disallowed from being an owner"))  # fmt: skip
        if ref.get("controller"):
            name = f"{ref.get('kind', '')}/{ref.get('name', '')}"
            if controller:
                shown = Rendered("[" + ",".join(_owner_json(r) for r in refs) + "]")
                errs.append(invalid(path, shown, "Only one reference can have Controller set to "
                                    f'true. Found "true" in references for {controller} and {name}'))  # fmt: skip
            else:
                controller = name
    return errs


def generated_name(generate_name: str, suffix: str) -> str:
    """storage/names SimpleNameGenerator: the base is cut to 58 characters, 5 random follow."""
    return generate_name[:58] + suffix
