"""The kinds the emulated API server knows: built-in ones and those a CustomResourceDefinition adds.

A `ResourceType` carries what changes behaviour between kinds: scope, whether `status` is a separate
subresource, whether `metadata.generation` is kept, and whether strategic-merge patches are accepted
(built-in kinds only: a real API server answers 415 for them on custom resources). Defaulting and
validation live here too, kept to what an operator's code can observe. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.kube.customresources import decode_custom_resource, validate_custom_resource
from tests.kube.fielderrors import invalid_status
from tests.kube.kinds import KIND_VALIDATORS, WITHOUT_OBJECT_META, name_check
from tests.kube.names import validate_object_meta

Obj = dict[str, Any]
VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    has_generation: bool = False
    builtin: bool = True
    schema: Obj | None = field(default=None, hash=False)  # a CRD version's openAPIV3Schema

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """How error messages name the resource: `pods`, `deployments.apps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _builtin(
    api_version: str, plural: str, kind: str, *, namespaced: bool = True, **extra: Any
) -> ResourceType:
    group, _, version = api_version.rpartition("/")
    return ResourceType(group, version, plural, kind, namespaced, kind.lower(), **extra)


BUILTINS: tuple[ResourceType, ...] = (
    _builtin("v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",),
             status_subresource=True),
    _builtin("v1", "pods", "Pod", short_names=("po",), status_subresource=True),
    _builtin("v1", "services", "Service", short_names=("svc",), status_subresource=True),
    _builtin("v1", "secrets", "Secret"),
    _builtin("v1", "configmaps", "ConfigMap", short_names=("cm",)),
    _builtin("v1", "events", "Event", short_names=("ev",)),
    _builtin("v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _builtin("apps/v1", "deployments", "Deployment", short_names=("deploy",),
             status_subresource=True, has_generation=True),
    _builtin("events.k8s.io/v1", "events", "Event", short_names=("ev",)),
    _builtin("coordination.k8s.io/v1", "leases", "Lease"),
    _builtin("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False, short_names=("crd", "crds"), status_subresource=True,
             has_generation=True),
)  # fmt: skip
CRD_GROUP = "apiextensions.k8s.io"


def crd_types(crd: Obj) -> Iterator[ResourceType]:
    """One `ResourceType` per served version of a CustomResourceDefinition (apiextensions/v1)."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        yield ResourceType(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular") or names["kind"].lower(),
            short_names=tuple(names.get("shortNames", [])),
            categories=tuple(names.get("categories", [])),
            status_subresource="status" in (version.get("subresources") or {}),
            has_generation=True,
            builtin=False,
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
        )


def crd_status(crd: Obj, now: str) -> Obj:
    """What the apiextensions controller reports once it serves a CRD: names accepted, Established."""
    conditions = [
        {"type": kind, "status": "True", "reason": reason, "message": message,
         "lastTransitionTime": now}
        for kind, reason, message in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
    ]  # fmt: skip
    versions = [v["name"] for v in crd.get("spec", {}).get("versions", []) if v.get("storage")]
    return {
        "acceptedNames": crd.get("spec", {}).get("names", {}),
        "conditions": conditions,
        "storedVersions": versions,
    }


def random_suffix(length: int = 5) -> str:
    return "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=length))


# --- defaulting and validation, per kind -----------------------------------------------------------


def _default_namespace(obj: Obj) -> None:
    meta = obj["metadata"]
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name", "")
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def _default_pod(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    for container in spec.get("containers", []):
        container.setdefault("imagePullPolicy", "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        for port in container.get("ports", []):
            port.setdefault("protocol", "TCP")
    for volume in spec.get("volumes", []):  # SetDefaults_SecretVolumeSource/_ConfigMapVolumeSource
        for source in ("secret", "configMap"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 0o644)
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def _default_service(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if "clusterIP" not in spec:
        spec["clusterIP"] = f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}"
        spec["clusterIPs"] = [spec["clusterIP"]]
    for port in spec.get("ports", []):
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def _default_secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None) or {}
    data = obj.setdefault("data", {})
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()


def _default_deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy["type"] = "RollingUpdate"
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    template_spec = spec.get("template", {}).get("spec")
    if template_spec is not None:
        _default_pod({"spec": template_spec})


Defaulter = Callable[[Obj], None]
DEFAULTS: dict[tuple[str, str], Defaulter] = {
    ("", "namespaces"): _default_namespace,
    ("", "pods"): _default_pod,
    ("", "services"): _default_service,
    ("", "secrets"): _default_secret,
    ("apps", "deployments"): _default_deployment,
}


def default_and_validate(
    rt: ResourceType, obj: Obj, old: Obj | None = None, *, status_only: bool = False
) -> None:
    """Fill server-side defaults in place and reject what the real API server would reject: the
    object metadata (`names.py`); for the kinds in `kinds.py` the spec; for custom resources their
    schema and CEL rules (`customresources.py`, after decoding: pruning, nulls, defaults). A status
    write (`status_only`) checks the status alone, as the status strategy does."""
    defaulter = DEFAULTS.get((rt.group, rt.plural))
    if defaulter is not None:
        defaulter(obj)
    if not rt.builtin:
        decode_custom_resource(rt.schema, obj)
        if old is None and rt.status_subresource:
            obj.pop("status", None)  # strategy.go PrepareForCreate: create cannot set status
    meta = obj["metadata"]
    checked = not status_only and (rt.group, rt.plural) not in WITHOUT_OBJECT_META
    namer = name_check(rt.group, rt.plural)
    errors = validate_object_meta(meta, rt.namespaced, namer) if checked else []
    validator = KIND_VALIDATORS.get((rt.group, rt.plural))
    if validator is not None:
        errors += validator(obj)
    if rt.schema is not None:
        errors = validate_custom_resource(
            rt.schema, obj, old, status_only=status_only, earlier=errors
        )
    if errors:
        raise invalid_status(rt.kind, rt.group, meta.get("name") or "", errors)
