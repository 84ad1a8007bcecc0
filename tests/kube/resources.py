"""The kinds the emulated API server knows: built-in ones and those a CustomResourceDefinition adds.

A `ResourceType` carries what changes behaviour between kinds: scope, whether `status` is a separate
subresource, whether `metadata.generation` is kept, and whether strategic-merge patches are accepted
(built-in kinds only: a real API server answers 415 for them on custom resources). Defaulting and
validation live here too, kept to what an operator's code can observe. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import copy
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.kube import events
from tests.kube.customresources import decode_custom_resource, validate_custom_resource
from tests.kube.fielderrors import FieldError, invalid_status
from tests.kube.kinds import KIND_VALIDATORS, STATUS_VALIDATORS, name_check
from tests.kube.names import (
    is_dns1123_subdomain,
    is_path_segment_name,
    kube_finalizer_errors,
    validate_object_meta,
)

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
    stored_as: tuple[str, str] | None = None  # (group, plural) of another API's storage

    @property
    def storage(self) -> tuple[str, str]:
        """Where its objects live: events.k8s.io/v1 Events are core v1 Events, converted."""
        return self.stored_as or (self.group, self.plural)

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
    _builtin("batch/v1", "jobs", "Job", status_subresource=True, has_generation=True),
    # stored as they come (no autoscaling or eviction here): what an operator writes reads back
    _builtin("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler",
             short_names=("hpa",), status_subresource=True),
    _builtin("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",),
             status_subresource=True, has_generation=True),
    _builtin("events.k8s.io/v1", "events", "Event", short_names=("ev",), stored_as=("", "events")),
    _builtin("coordination.k8s.io/v1", "leases", "Lease"),
    _builtin("networking.k8s.io/v1", "ingresses", "Ingress", short_names=("ing",),
             status_subresource=True, has_generation=True),
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
    spec.setdefault("securityContext", {})
    for container in spec.get("containers", []):
        container.setdefault("imagePullPolicy", _pull_policy(container.get("image") or ""))
        container.setdefault("resources", {})
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        for port in container.get("ports", []):
            port.setdefault("protocol", "TCP")
    for volume in spec.get("volumes", []):  # SetDefaults_SecretVolumeSource/_ConfigMapVolumeSource
        for source in ("secret", "configMap"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 0o644)
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def _keep_allocated(obj: Obj, old: Obj) -> None:
    """An update that leaves out the Service's cluster IPs keeps the allocated ones (the service
    registry's `patchAllocatedValues`), rather than getting new ones."""
    spec, old_spec = obj.setdefault("spec", {}), old.get("spec") or {}
    for allocated in ("clusterIP", "clusterIPs"):
        if not spec.get(allocated) and allocated in old_spec:
            spec[allocated] = copy.deepcopy(old_spec[allocated])


def _pull_policy(image: str) -> str:
    """SetDefaults_Container: `Always` for an image without a tag (or digest) or `:latest`."""
    name = image.rsplit("/", 1)[-1]
    tag = name.partition(":")[2] if ":" in name and "@" not in image else ""
    return "Always" if "@" not in image and tag in ("", "latest") else "IfNotPresent"


def _default_service(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if "clusterIP" not in spec:
        spec["clusterIP"] = f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}"
        spec["clusterIPs"] = [spec["clusterIP"]]
    if spec["type"] != "ExternalName":  # single-stack IPv4, as the control plane of tests/real
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    for port in spec.get("ports", []):
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def _default_secret(obj: Obj) -> None:
    obj["type"] = obj.get("type") or "Opaque"
    string_data = obj.pop("stringData", None) or {}
    data = obj.setdefault("data", {})
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if not data:  # an empty map is not encoded (`omitempty`)
        del obj["data"]


def _default_config_map(obj: Obj) -> None:
    for member in ("data", "binaryData"):  # `omitempty`
        if member in obj and not obj[member]:
            del obj[member]


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


def _default_job(obj: Obj) -> None:
    """SetDefaults_Job: one completion at a time, 6 retries, the template's labels for a Job with
    none of its own (before the generated ones are added), and the template's pod defaults."""
    spec = obj.setdefault("spec", {})
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    labels = (spec.get("template", {}).get("metadata") or {}).get("labels")
    if labels and not obj["metadata"].get("labels"):
        # the same map, as in Go: the labels generateSelector adds to the template show here too
        obj["metadata"]["labels"] = labels
    elif labels is not None and obj["metadata"].get("labels") is labels:  # one map in a body
        obj["metadata"]["labels"] = dict(labels)  # given in Python (JSON would give two)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    spec.setdefault("manualSelector", False)
    template_spec = spec.get("template", {}).get("spec")
    if template_spec is not None:
        _default_pod({"spec": template_spec})
    obj.setdefault("status", {})  # a struct, never left out


JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")
CONTROLLER_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")


def generate_job_selector(obj: Obj) -> None:
    """The Job strategy's `generateSelector` on create (unless `manualSelector`): the template
    labelled with the Job's name and uid, the selector on `batch.kubernetes.io/controller-uid`."""
    meta, spec = obj["metadata"], obj.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = template_meta.setdefault("labels", {})
    for key in JOB_NAME_LABELS:
        labels.setdefault(key, meta.get("name", ""))
    for key in CONTROLLER_UID_LABELS:
        labels.setdefault(key, meta.get("uid", ""))
    selector = spec.setdefault("selector", {}).setdefault("matchLabels", {})
    selector.setdefault(CONTROLLER_UID_LABELS[1], meta.get("uid", ""))


def to_storage(rt: ResourceType, obj: Obj) -> Obj:
    """A body written through `rt`'s API, as stored (Events of both APIs are stored alike)."""
    if rt.storage != ("", "events"):
        return obj
    return events.from_events_v1(obj) if rt.stored_as else events.to_core(obj)


def view(rt: ResourceType, stored: Obj) -> Obj:
    """A stored object as `rt`'s API shows it (not a copy, unless converted)."""
    converted = events.to_events_v1(stored) if rt.stored_as == ("", "events") else stored
    return {**converted, "apiVersion": rt.api_version}


Defaulter = Callable[[Obj], None]
DEFAULTS: dict[tuple[str, str], Defaulter] = {
    ("", "namespaces"): _default_namespace,
    ("", "pods"): _default_pod,
    ("", "services"): _default_service,
    ("", "secrets"): _default_secret,
    ("", "configmaps"): _default_config_map,
    ("apps", "deployments"): _default_deployment,
    ("batch", "jobs"): _default_job,
}


def compact_metadata(meta: Obj) -> None:
    """What the API server's encoding leaves out of `metadata`: every ObjectMeta field is
    `omitempty`, so an empty name, map or list (`labels: {}`, `finalizers: []`) or a zero
    `generation` is not stored (a zero `deletionGracePeriodSeconds`, a pointer, is)."""
    for key in [
        k for k, v in meta.items() if v in ("", {}, [], None) or (k, v) == ("generation", 0)
    ]:
        del meta[key]


def default_and_validate(
    rt: ResourceType, obj: Obj, old: Obj | None = None, *, status_only: bool = False
) -> None:
    """Fill server-side defaults in place and reject what the real API server would reject: the
    object metadata (`names.py`); for the kinds in `kinds.py` the spec; for custom resources their
    schema and CEL rules (`customresources.py`, after decoding: pruning, nulls, defaults). A status
    write (`status_only`) checks the status alone, as the status strategy does."""
    if status_only and rt.builtin:
        status_validator = STATUS_VALIDATORS.get((rt.group, rt.plural))
        errors = status_validator(obj) if status_validator else []
        if errors:
            raise invalid_status(rt.kind, rt.group, obj["metadata"].get("name") or "", errors)
        return
    compact_metadata(obj.setdefault("metadata", {}))
    if (rt.group, rt.plural) == ("", "services") and old is not None:
        _keep_allocated(obj, old)
    defaulter = DEFAULTS.get((rt.group, rt.plural))
    if defaulter is not None:
        defaulter(obj)
    if (rt.group, rt.plural) == ("batch", "jobs") and old is None:
        generate_job_selector(obj)  # the uid is known: the Store gives it before validation
    if not rt.builtin:
        decode_custom_resource(rt.schema, obj)
        if old is None and rt.status_subresource:
            obj.pop("status", None)  # strategy.go PrepareForCreate: create cannot set status
    meta = obj["metadata"]
    if rt.storage == ("", "events"):
        errors = _event_errors(rt, obj, old)
        if errors:
            raise invalid_status(rt.kind, "", meta.get("name") or "", errors)
        return
    errors = [] if status_only else _meta_errors(rt, meta, old)
    validator = KIND_VALIDATORS.get((rt.group, rt.plural))
    if validator is not None:
        errors += validator(obj, old)
    if rt.schema is not None:
        errors = validate_custom_resource(
            rt.schema, obj, old, status_only=status_only, earlier=errors
        )
    if errors:
        raise invalid_status(rt.kind, rt.group, meta.get("name") or "", errors)


def _meta_errors(rt: ResourceType, meta: Obj, old: Obj | None) -> list[FieldError]:
    """The object metadata's errors: ValidateObjectMeta, with core/validation's finalizer rule
    for the built-in kinds. On an update of a custom resource, a real server (1.37) lists each
    label and annotation error three times in the causes, once in the message: so here (the
    differential test of tests/real holds it to that)."""
    errors = validate_object_meta(meta, rt.namespaced, name_check(rt.group, rt.plural))
    if rt.builtin:
        return errors + kube_finalizer_errors(meta)
    if old is not None:
        again = [e for e in errors if e.field in ("metadata.labels", "metadata.annotations")]
        errors += again + again
    return errors


def _event_errors(rt: ResourceType, obj: Obj, old: Obj | None) -> list[FieldError]:
    """core/validation/events.go through either API, with the generic object metadata checks of
    `rest.BeforeCreate` (only once the Event's own rules pass) or `BeforeUpdate` (first), whose
    names need only be valid path segments. The Event is in its stored (core v1) form."""
    meta, strict = obj["metadata"], bool(rt.stored_as)
    generic = validate_object_meta(meta, True, is_path_segment_name)
    if old is not None:
        errors = generic + events.legacy_errors(obj, strict=strict)
        return errors + (events.strict_update_errors(obj, old) if strict else [])
    errors = events.legacy_errors(obj, strict=strict)
    if strict:
        errors += validate_object_meta(meta, True, is_dns1123_subdomain)
        errors += kube_finalizer_errors(meta) + events.strict_create_errors(obj)
    return errors or generic
