"""The ModelDeployment CustomResourceDefinition and its field reference, generated from the models.

The pydantic models in `domain/spec.py` and `domain/status.py` are the one source of truth: this
module turns their JSON schema into a Kubernetes *structural* OpenAPI v3 schema, so the API server
validates, defaults and prunes exactly what the operator parses. `crds/` and the reference section
of `docs/crd.md` are its output, and tests keep them identical to it. Never edit those by hand.

How JSON schema maps to a structural schema:
- `$ref`s are inlined: Kubernetes has no `$defs`.
- `X | None` becomes `X` alone, never `nullable`: the API server then prunes a `null` like an
  absent field, which is what `None` means to the models (and to the CEL rule's `has()`).
- a `default_factory` becomes a `default`: for a nested model, the fields its factory sets
  beyond their defaults (`{}` mostly), so the API server fills the inner fields' own defaults,
  and the factory's value (`[]`) for a list.
- `additionalProperties: false` is dropped (unknown fields are pruned, or rejected by strict field
  validation); free-form objects (`dict[str, Any]`) keep their content with
  `x-kubernetes-preserve-unknown-fields`.
- anything else with no structural equivalent (other unions, `uniqueItems`...) raises, so a model
  change that the CRD cannot express fails the tests instead of producing a lax schema.

Run `python -m turnout_operator.crd` to print the CRD.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from turnout_operator.domain.kube_rules import DNS1035_LABEL, anchored
from turnout_operator.domain.spec import GROUP, KIND, PLURAL, VERSION, ModelDeploymentSpec
from turnout_operator.domain.status import ModelDeploymentStatus
from turnout_operator.domain.validation import MAX_NAME_LENGTH

CRD_FILE = f"crds/{PLURAL}.{GROUP}.yaml"
HEADER = f"""\
# Generated from operator/turnout_operator/domain/spec.py and status.py: do not edit.
# Regenerate: .venv/bin/python -m turnout_operator.crd > {CRD_FILE}
"""
BEGIN = "<!-- generated: begin -->"
END = "<!-- generated: end -->"

# The API server's half of ModelRef._exactly_one (the operator's half is the pydantic validator).
EXACTLY_ONE_REFERENCE = {
    "rule": "[has(self.version), has(self.alias), has(self.stage)].filter(x, x).size() == 1",
    "message": "spec.model needs exactly one of version, alias or stage",
}

# The name becomes the Services `<name>` and `<name>-preview`: DNS-1035 labels of at most 63
# characters (domain/validation.py). Only a rule at the root may read metadata.name.
NAME_RULE = {
    "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH} && "
    f"self.metadata.name.matches('{anchored(DNS1035_LABEL)}')",
    "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters of lower-case "
    "letters, digits and '-', starting with a letter and ending with a letter or digit: it "
    "names the Services <name> and <name>-preview (DNS-1035 labels)",
}

_PRINTER_COLUMNS = [
    ("Model", "string", ".spec.model.name"),
    ("Desired", "string", ".status.desiredVersion"),
    ("Active", "string", ".status.activeVersion"),
    ("Color", "string", ".status.activeColor"),
    ("Phase", "string", ".status.phase"),
    ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
    # where a rollout stands: the gate it waits on (PrePromotionAnalysis, WaitingForPromotion...)
    ("Step", "string", '.status.conditions[?(@.type=="Progressing")].reason'),
    ("URL", "string", ".status.url"),
    ("Age", "date", ".metadata.creationTimestamp"),
]
# Keys copied as they are; the order is the one written out, for a CRD that reads top-down.
_KEYS = (
    "description", "type", "format", "default", "enum", "minimum", "exclusiveMinimum", "maximum",
    "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
    "minProperties", "maxProperties", "items", "properties", "required", "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
)  # fmt: skip
_DROPPED = {"title"}


class _FactoryDefaults(GenerateJsonSchema):
    """Pydantic leaves `default_factory` values out of the schema; the API server needs them."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = cast(Callable[[], Any], factory)()
        if isinstance(value, BaseModel):  # what the factory sets beyond the model's defaults
            return value.model_dump(by_alias=True, exclude_defaults=True, mode="json")
        return value


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of `model`'s API (camelCase) form."""
    schema = model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_FactoryDefaults
    )
    return _structural(schema, schema.get("$defs", {}), ())


def _structural(
    node: dict[str, Any], defs: dict[str, Any], seen: tuple[str, ...]
) -> dict[str, Any]:
    node = {k: v for k, v in node.items() if k != "$defs"}
    if "$ref" in node:
        name = node.pop("$ref").removeprefix("#/$defs/")
        if name in seen:
            raise ValueError(f"{name} is recursive: a structural schema cannot inline it")
        return _structural({**defs[name], **node}, defs, (*seen, name))
    if "anyOf" in node:
        choices = [c for c in node.pop("anyOf") if c != {"type": "null"}]
        if len(choices) != 1:
            raise ValueError(f"no structural schema for the union {choices}: only `X | None`")
        return _structural({**choices[0], **node}, defs, seen)
    if node.get("default", ...) is None:
        del node["default"]  # None is "absent", and so is a pruned null
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "additionalProperties" and value is False):
            continue
        if key == "additionalProperties" and value is True:
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif key == "additionalProperties":
            out[key] = _structural(value, defs, seen)
        elif key == "properties":
            out[key] = {name: _structural(sub, defs, seen) for name, sub in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs, seen)
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):  # a number in JSON schema 2020-12
            out[key.replace("exclusiveM", "m")] = value
            out[key] = True
        elif key in _KEYS or key.startswith("x-kubernetes-"):
            out[key] = value
        else:
            raise ValueError(f"{key!r} has no place in a structural schema (in {node})")
    if not out.get("type") and not out.get("x-kubernetes-preserve-unknown-fields"):
        if "properties" not in out:  # `Any`: keep whatever is there
            out["x-kubernetes-preserve-unknown-fields"] = True
        else:
            out["type"] = "object"
    if out.get("type") == "object" and not {"properties", "additionalProperties"} & out.keys():
        out["x-kubernetes-preserve-unknown-fields"] = True  # a bare `dict`
    rank = {key: i for i, key in enumerate(_KEYS)}
    return dict(sorted(out.items(), key=lambda item: rank.get(item[0], len(rank))))


def build_crd() -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of ModelDeployment."""
    spec = openapi_schema(ModelDeploymentSpec)
    spec["properties"]["model"]["x-kubernetes-validations"] = [EXACTLY_ONE_REFERENCE]
    root = {
        "description": "Serves a model of the MLflow registry and rolls new versions out "
        "blue-green.",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": openapi_schema(ModelDeploymentStatus),
        },
        "required": ["spec"],
        "x-kubernetes-validations": [NAME_RULE],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["mdep"],
                "categories": ["turnout"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    # `kubectl scale mdep` sets spec.replicas (autoscaling off); the status
                    # reports the active color's pods (domain/autoscaling.py).
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": name, "type": type_, "jsonPath": path}
                        for name, type_, path in _PRINTER_COLUMNS
                    ],
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD file's content: the header, then the YAML."""
    return HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=1000)


def reference_markdown() -> str:
    """The field reference of docs/crd.md: one table per object, spec first, then status."""
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    sections = [*_sections("spec", schema["spec"]), *_sections("status", schema["status"])]
    return "\n\n".join(sections) + "\n"


def _sections(path: str, node: dict[str, Any]) -> Iterator[str]:
    rows = ["| Field | Type | Default | Description |", "| --- | --- | --- | --- |"]
    nested: list[tuple[str, dict[str, Any]]] = []
    required = set(node.get("required", ()))
    for name, field in node["properties"].items():
        target = field.get("items", field)
        child = f"{path}.{name}[]" if "items" in field else f"{path}.{name}"
        if "properties" in target:
            nested.append((child, target))
        default = "required" if name in required else _code(field.get("default", ...))
        described = field.get("description", "").replace("|", "\\|")
        typed = _type(field, child).replace("|", "\\|")  # a pattern's `|` would end the cell
        rows.append(f"| `{name}` | {typed} | {default} | {described} |")
    rules = [
        f"The API server checks: {v['message']}." for v in node.get("x-kubernetes-validations", ())
    ]
    intro = "".join(f"{text}\n\n" for text in [node.get("description"), *rules] if text)
    yield f"### `{path}`\n\n{intro}" + "\n".join(rows)
    for child, target in nested:
        yield from _sections(child, target)


def _type(field: dict[str, Any], path: str) -> str:
    if "enum" in field:
        return "one of " + ", ".join(f"`{v}`" for v in field["enum"])
    kind = field.get("type", "any")
    if "properties" in field:
        return f"object ([`{path}`](#{path.replace('.', '').replace('[]', '').lower()}))"
    if kind == "object" and "additionalProperties" in field:
        return f"map of {_type(field['additionalProperties'], path)}"
    if kind == "object":
        return "object (free-form)"
    if kind == "array":
        return f"list of {_type(field['items'], path)}"
    bounds = []
    if field.get("minLength") == 1:
        bounds.append("non-empty")
    if "pattern" in field:
        bounds.append(f"matching `{field['pattern']}`")
    if "minimum" in field and "maximum" in field:
        bounds.append(f"{field['minimum']} to {field['maximum']}")
    elif "minimum" in field:
        bounds.append(f"at least {field['minimum']}")
    elif "maximum" in field:
        bounds.append(f"at most {field['maximum']}")
    return ", ".join([kind, *bounds])


def _code(value: Any) -> str:
    return "" if value is ... else f"`{json.dumps(value)}`"


def splice_reference(document: str) -> str:
    """`document` with the part between the generated-section markers replaced by the reference."""
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{reference_markdown()}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m turnout_operator.crd", description="Print the ModelDeployment CRD."
    )
    parser.add_argument("--reference", action="store_true", help="print the Markdown reference")
    parser.add_argument(
        "--update-docs", type=Path, metavar="PATH", help="rewrite the reference section of PATH"
    )
    args = parser.parse_args(argv)
    if args.update_docs:
        args.update_docs.write_text(splice_reference(args.update_docs.read_text()))
    elif args.reference:
        sys.stdout.write(reference_markdown())
    else:
        sys.stdout.write(crd_yaml())


if __name__ == "__main__":
    main()
