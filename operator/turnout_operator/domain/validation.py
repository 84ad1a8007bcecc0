"""Will the API server accept every object this ModelDeployment becomes? Checked before any write.

A spec the schema accepts can still produce objects the API server rejects: a 56-character name
makes `<name>-preview` longer than a Service name may be, a dot in the name makes no Service name
at all, a label key may not be a qualified name, annotations may pass 256 KiB once the operator
adds its own. Unchecked, such a ModelDeployment was retried forever with nothing in its status,
and half of its objects created (the blue Deployment, then a Service refused). So `problems()`
builds every object the builders will write (both colors, both Services, the routes) and checks
them with the API server's rules (kube_rules.py), naming the ModelDeployment field to fix; the
planner writes nothing while there is one. The spec's own fields are checked by the typed spec
(spec.py) and, where OpenAPI or CEL can say it, by the CRD already.

Pure: no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from turnout_operator.domain import kube_rules as K
from turnout_operator.domain.exposure import ROUTE_APIS, build_route, expose_service
from turnout_operator.domain.manifests import Defaults, build_deployment, build_service
from turnout_operator.domain.notifications import unknown_channels
from turnout_operator.domain.spec import (
    COLORS,
    BlueGreen,
    ModelDeploymentSpec,
    ModelRef,
    RegistrySpec,
    Strategy,
)

# The longest ModelDeployment name whose Services (`<name>`, `<name>-preview`) are DNS-1035 labels.
PREVIEW_SUFFIX = "-preview"
MAX_NAME_LENGTH = K.DNS1035_LABEL_MAX - len(PREVIEW_SUFFIX)


@dataclass(frozen=True)
class Problem:
    """What the API server would refuse, and the ModelDeployment field to fix."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def name_problems(name: str) -> list[Problem]:
    """The ModelDeployment's name names its Services and Deployments, and is a label value."""
    if len(name) > MAX_NAME_LENGTH:
        return [
            Problem(
                "metadata.name",
                f"{len(name)} characters: at most {MAX_NAME_LENGTH}, as the preview Service "
                f"'<name>{PREVIEW_SUFFIX}' must be a DNS-1035 label of at most "
                f"{K.DNS1035_LABEL_MAX} characters",
            )
        ]
    return [
        Problem("metadata.name", f"{name!r} cannot name a Service: {e}")
        for e in K.dns1035_label(name)
    ]


def problems(
    name: str, namespace: str, spec: ModelDeploymentSpec, defaults: Defaults
) -> list[Problem]:
    """What the API server would reject in the objects built from this spec, each naming the
    field to fix; empty when it will accept them all."""
    found = name_problems(name)
    if found:
        return found  # every object is named after it: nothing else can be checked
    template = spec.template
    for field, entries in (
        ("spec.template.podLabels", template.pod_labels or {}),
        ("spec.template.nodeSelector", template.node_selector or {}),
    ):
        found += [Problem(field, e) for e in K.label_errors(entries)]
    annotations = template.pod_annotations or {}
    found += [
        Problem("spec.template.podAnnotations", f"key {k!r}: {e}")
        for k in annotations
        for e in K.qualified_name(k.lower())
    ]
    return found or _object_problems(name, namespace, spec, defaults)


# Where a built object's parts come from in the ModelDeployment.
_SOURCES = {
    "spec.template.metadata.annotations": "spec.template.podAnnotations",
    "spec.template.metadata.labels": "spec.template.podLabels",
    "spec.template.spec.nodeSelector": "spec.template.nodeSelector",
    "spec.template.spec.containers[0].env": "spec.template.env",
    "spec.template.spec.containers[0].envFrom": "spec.registry.credentialsSecret",
    "spec.template.spec.serviceAccountName": "spec.template.serviceAccountName",
}


_EXPOSURE_SOURCES = {
    ("Service", "metadata.annotations"): "spec.service.annotations",
    ("Service", "metadata.labels"): "spec.service.labels",
    ("Ingress", "metadata.annotations"): "spec.ingress.annotations",
    ("HTTPRoute", "metadata.annotations"): "spec.httpRoute.annotations",
}


def _object_problems(
    name: str, namespace: str, spec: ModelDeploymentSpec, defaults: Defaults
) -> list[Problem]:
    """The built objects themselves, as the API server will check them: what the field checks
    cannot see alone (the operator's labels and annotations added to the user's)."""
    objects = [
        build_deployment(
            name, namespace, color, "1", f"models:/{spec.model.name}/1", 1, spec, defaults
        )
        for color in COLORS
    ]
    objects += [
        build_service(name, namespace, "preview", "blue"),
        expose_service(build_service(name, namespace, "active", "blue"), spec.service),
    ]
    objects += [r for kind in ROUTE_APIS if (r := build_route(kind, name, namespace, spec))]
    return [
        Problem(
            _SOURCES.get(path) or _EXPOSURE_SOURCES.get((obj["kind"], path), "metadata.name"),
            f"{obj['kind']} {obj['metadata']['name']}: {path}: {message}",
        )
        for obj in objects
        for path, message in object_errors(obj)
    ]


def object_errors(obj: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(path, reason) for each part of a Deployment or Service the API server would reject:
    its name (a Service's a DNS-1035 label, a Deployment's a DNS-1123 subdomain), labels,
    annotations, selector, and its pod template's labels, annotations, nodeSelector, service
    account, envFrom Secrets and environment variable names."""
    meta = obj["metadata"]
    check = K.dns1035_label if obj["kind"] == "Service" else K.dns1123_subdomain
    yield from (("metadata.name", e) for e in check(meta["name"]))
    yield from _meta_errors("metadata", meta)
    spec = obj.get("spec") or {}
    selector = spec.get("selector") or {}
    yield from (("spec.selector", e) for e in K.label_errors(selector.get("matchLabels", selector)))
    template = spec.get("template")
    if template is None:
        return
    yield from _meta_errors("spec.template.metadata", template["metadata"])
    pod = template["spec"]
    where = "spec.template.spec"
    node_selector = pod.get("nodeSelector") or {}
    yield from ((f"{where}.nodeSelector", e) for e in K.label_errors(node_selector))
    if pod.get("serviceAccountName"):
        errors = K.dns1123_subdomain(pod["serviceAccountName"])
        yield from ((f"{where}.serviceAccountName", e) for e in errors)
    for i, container in enumerate(pod["containers"]):
        for env in container.get("env", ()):
            errors = K.env_var_name(env["name"])
            yield from ((f"{where}.containers[{i}].env", f"{env['name']!r}: {e}") for e in errors)
        for source in container.get("envFrom", ()):
            secret = (source.get("secretRef") or {}).get("name", "")
            errors = K.dns1123_subdomain(secret)
            yield from ((f"{where}.containers[{i}].envFrom", f"{secret!r}: {e}") for e in errors)


def _meta_errors(path: str, meta: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    yield from ((f"{path}.labels", e) for e in K.label_errors(meta.get("labels") or {}))
    yield from (
        (f"{path}.annotations", e) for e in K.annotation_errors(meta.get("annotations") or {})
    )


@dataclass(frozen=True)
class Checked:
    """A ModelDeployment's spec as parsed, and what stops the operator from acting on it."""

    spec: ModelDeploymentSpec  # for an invalid spec: what could be salvaged (see `salvage`)
    problems: tuple[Problem, ...] = ()

    @property
    def why(self) -> str:
        return "; ".join(str(p) for p in self.problems)[:MAX_MESSAGE]


MAX_MESSAGE = 1000


def check(
    name: str, namespace: str, raw: Mapping[str, Any], defaults: Defaults,
    channels: Collection[str] = (),
) -> Checked:  # fmt: skip
    """Parse the spec and check everything it will become, and that each notification channel
    it names is one of the operator's `channels`; never raises."""
    try:
        spec = ModelDeploymentSpec.model_validate(raw)
    except ValidationError as exc:
        found = [
            Problem("spec." + ".".join(str(part) for part in e["loc"]), e["msg"])
            for e in exc.errors()
        ]
        return Checked(salvage(raw), (*name_problems(name), *found))
    found = problems(name, namespace, spec, defaults)
    found += [
        Problem(f"spec.notifications[{i}].channel",
                f"no notification channel {channel!r} is configured in the operator "
                f"(configured: {', '.join(sorted(channels)) or 'none'})")
        for i, channel in unknown_channels(spec.notifications, channels)
    ]  # fmt: skip
    return Checked(spec, tuple(found))


def salvage(raw: Any) -> ModelDeploymentSpec:
    """From a spec that does not parse, what the annotations still need: the model's name, the
    registry (for tags) and each blue-green setting that is valid on its own, defaults for the
    rest. Never raises: abort and rollback must work whatever the spec says."""
    raw = raw if isinstance(raw, Mapping) else {}
    model, registry = _mapping(raw.get("model")), _mapping(raw.get("registry"))
    kept = {
        key: value
        for key, value in _mapping(_mapping(raw.get("strategy")).get("blueGreen")).items()
        if _valid(BlueGreen, {key: value})
    }
    name = model.get("name")
    return ModelDeploymentSpec.model_construct(
        model=ModelRef.model_construct(
            name=name if isinstance(name, str) else "", version=None, alias=None, stage=None
        ),
        registry=RegistrySpec.model_validate(registry if _valid(RegistrySpec, registry) else {}),
        strategy=Strategy(blue_green=BlueGreen.model_validate(kept)),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _valid(model: type[BaseModel], value: Mapping[str, Any]) -> bool:
    try:
        model.model_validate(value)
    except ValidationError:
        return False
    return True
