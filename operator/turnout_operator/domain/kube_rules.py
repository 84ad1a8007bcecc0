"""The Kubernetes API server's rules for names, labels, annotations and environment variables.

Transcribed from k8s.io/apimachinery/pkg/util/validation/validation.go (IsDNS1123Subdomain,
IsDNS1035Label, IsQualifiedName, IsValidLabelValue, IsEnvVarName) and
k8s.io/apimachinery/pkg/api/validation/objectmeta.go (ValidateAnnotations: keys are qualified
names once lower-cased; TotalAnnotationSizeLimitB). Each check returns the API server's reasons,
empty when the value is valid. The patterns are RE2-compatible, so the CRD's `pattern`s and CEL
rules use the very same ones.

Pure: no Kubernetes client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_MAX = 63
QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_MAX = 63
LABEL_VALUE = rf"({QUALIFIED_NAME})?"
LABEL_VALUE_MAX = 63
ENV_VAR_NAME = r"[-._a-zA-Z][-._a-zA-Z0-9]*"
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * (1 << 10)  # bytes of all keys and values of one object


def anchored(pattern: str) -> str:
    return f"^{pattern}$"


_SUBDOMAIN = re.compile(anchored(DNS1123_SUBDOMAIN))
_DNS1035 = re.compile(anchored(DNS1035_LABEL))
_QUALIFIED = re.compile(anchored(QUALIFIED_NAME))
_LABEL_VALUE = re.compile(anchored(LABEL_VALUE))
_ENV_VAR = re.compile(anchored(ENV_VAR_NAME))


def dns1123_subdomain(value: str) -> list[str]:
    errors = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errors.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _SUBDOMAIN.match(value):
        errors.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character"
        )
    return errors


def dns1035_label(value: str) -> list[str]:
    errors = []
    if len(value) > DNS1035_LABEL_MAX:
        errors.append(f"must be no more than {DNS1035_LABEL_MAX} characters")
    if not _DNS1035.match(value):
        errors.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character"
        )
    return errors


def qualified_name(value: str) -> list[str]:
    """A label key (or a lower-cased annotation key): `[prefix/]name`, the prefix a DNS-1123
    subdomain, the name at most 63 characters."""
    parts = value.split("/")
    if len(parts) > 2:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an "
            "optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    errors = []
    name = parts[-1]
    if len(parts) == 2:
        if not parts[0]:
            errors.append("prefix part must be non-empty")
        else:
            errors += [f"prefix part {e}" for e in dns1123_subdomain(parts[0])]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errors.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
    if name and not _QUALIFIED.match(name):
        errors.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character"
        )
    return errors


def label_value(value: str) -> list[str]:
    errors = []
    if len(value) > LABEL_VALUE_MAX:
        errors.append(f"must be no more than {LABEL_VALUE_MAX} characters")
    if not _LABEL_VALUE.match(value):
        errors.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character"
        )
    return errors


def env_var_name(value: str) -> list[str]:
    if _ENV_VAR.match(value):
        return []
    return [
        "a valid environment variable name must consist of alphabetic characters, digits, '_', "
        "'-', or '.', and must not start with a digit"
    ]


def annotations_size(annotations: Mapping[str, str]) -> int:
    """What counts against TOTAL_ANNOTATION_SIZE_LIMIT: the bytes of every key and value."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())


def annotation_errors(annotations: Mapping[str, str]) -> list[str]:
    """ValidateAnnotations: every key a qualified name (once lower-cased), and the total size."""
    errors = [f"key {k!r}: {e}" for k in annotations for e in qualified_name(k.lower())]
    size = annotations_size(annotations)
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        errors.append(
            f"Too long: must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes, got {size}"
        )
    return errors


def label_errors(labels: Mapping[str, str]) -> list[str]:
    """ValidateLabels: qualified-name keys, label values."""
    errors = [f"key {k!r}: {e}" for k in labels for e in qualified_name(k)]
    return errors + [f"{k}={v!r}: {e}" for k, v in labels.items() for e in label_value(v)]
