"""What the differential test of the emulator (test_emulator_parity.py) sends, per kind: valid and
invalid bodies, the changes a read-modify-write makes, patches, field selectors, status writes;
and the names, labels, selectors and delete options it draws from. Strings "@ns" and "@key" in the
templates stand for the example's namespace and the target's `Kind/name`; "@rv{...}",
"@stale{...}" and "@uid{...}" are resolved per server by `parity.Side`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"
MICRO = "2026-01-01T00:00:00.000000Z"


@dataclass(frozen=True)
class Kind:
    """One API of one kind, and what the test sends it. Strings "@ns" and "@key" in the
    templates are filled with the example's namespace and the target object's `Kind/name`."""

    name: str  # the storage's kind: Events of both APIs are one
    api: str  # "/api/v1", "/apis/apps/v1", ...
    plural: str
    api_version: str
    valid: tuple[Obj, ...]
    invalid: tuple[Obj, ...]
    mutations: tuple[Obj, ...]  # changes a read-modify-write PUT makes (None removes)
    patches: tuple[tuple[str, Any], ...]  # (Content-Type, patch)
    fields: tuple[str, ...] = ()  # field selectors beyond metadata.name / metadata.namespace
    statuses: tuple[Obj, ...] = ()  # status subresource writes
    builtin: bool = True

    def collection(self, namespace: str) -> str:
        return f"{self.api}/namespaces/{namespace}/{self.plural}"

    @property
    def label(self) -> str:
        return f"{self.api_version} {self.name}"


def fill(template: Any, **values: str) -> Any:
    """A deep copy of `template` with "@ns" / "@key" replaced in every string."""
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace(f"@{name}", value)
        return template
    if isinstance(template, list):
        return [fill(v, **values) for v in template]
    if isinstance(template, dict):
        return {k: fill(v, **values) for k, v in template.items()}
    return template


def merged(base: Any, change: Any) -> Any:
    """`change` laid over `base` as a client builds the body of a PUT (None removes a member)."""
    if not isinstance(base, dict) or not isinstance(change, dict):
        return copy.deepcopy(change)
    result = copy.deepcopy(base)
    for key, value in change.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result


# --- what is sent to each kind -----------------------------------------------------------------

COMMON_PATCHES: tuple[tuple[str, Any], ...] = (
    (MERGE, {"metadata": {"labels": {"app": "web", "tier": None}}}),
    (MERGE, {"metadata": {"finalizers": ["example.com/a"]}}),
    (MERGE, {"metadata": {"finalizers": None}}),
    (MERGE, {"metadata": {"resourceVersion": "@rv{@key}", "labels": {"tier": "b"}}}),
    (MERGE, {"metadata": {"resourceVersion": "@stale{@key}", "labels": {"tier": "c"}}}),
    (MERGE, {"metadata": {"annotations": {"example.com/note": "x"}}}),
    (MERGE, {"metadata": {"labels": {"bad key!": "x"}}}),
    (MERGE, {"metadata": {"name": "renamed"}}),
    (JSON_PATCH, [{"op": "add", "path": "/metadata/labels/tier", "value": "a"}]),
    (JSON_PATCH, [{"op": "replace", "path": "/metadata/labels", "value": {"app": "db"}}]),
    (JSON_PATCH, [{"op": "test", "path": "/metadata/finalizers", "value": ["example.com/a"]},
                  {"op": "replace", "path": "/metadata/finalizers", "value": []}]),
    (JSON_PATCH, [{"op": "remove", "path": "/metadata/finalizers"}]),
    (JSON_PATCH, [{"op": "remove", "path": "/metadata/annotations/missing"}]),
    (STRATEGIC, {"metadata": {"finalizers": ["example.com/b"]}}),
    (STRATEGIC, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}}),
    (STRATEGIC, {"metadata": {"labels": {"app": "db"}}}),
)  # fmt: skip
COMMON_MUTATIONS: tuple[Obj, ...] = (
    {"metadata": {"labels": {"app": "db"}}},
    {"metadata": {"labels": None}},
    {"metadata": {"annotations": {"example.com/note": "y"}}},
    {"metadata": {"finalizers": ["example.com/a", "example.com/b"]}},
    {"metadata": {"finalizers": None}},
    {"metadata": {"name": "renamed"}},
    {"metadata": {"labels": {"app": "x" * 64}}},
)
TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "main", "image": "example/app:1"}]}}  # fmt: skip
MODEL = {"name": "iris", "version": "1"}
REGARDING = {"apiVersion": "v1", "kind": "ConfigMap", "name": "alpha", "namespace": "@ns"}

CONFIGMAP = Kind(
    "ConfigMap", "/api/v1", "configmaps", "v1",
    valid=({"data": {"k": "v"}}, {"data": {"a.b_c-d": "1"}, "binaryData": {"bin": "AAE="}}, {}),
    invalid=({"data": {"bad key": "v"}}, {"data": {"k": "v"}, "binaryData": {"k": "AAE="}},
             {"data": {"k": 1}}),
    mutations=({"data": {"k": "w"}}, {"data": None}, {"data": {"bad key": "v"}}),
    patches=((MERGE, {"data": {"k": None, "n": "x"}}), (STRATEGIC, {"data": {"n": "y"}}),
             (JSON_PATCH, [{"op": "replace", "path": "/data/k", "value": "z"}])),
)  # fmt: skip
SECRET = Kind(
    "Secret", "/api/v1", "secrets", "v1",
    valid=({"stringData": {"token": "abc"}}, {"type": "Opaque", "data": {"k": "dg=="}},
           {"type": "kubernetes.io/basic-auth", "stringData": {"username": "u", "password": "p"}}),
    invalid=({"data": {"k": "not base64!"}}, {"type": "kubernetes.io/basic-auth", "data": {}},
             {"stringData": {"bad key": "x"}}),
    mutations=({"stringData": {"token": "def"}}, {"data": {"k": "dw=="}},
               {"type": "kubernetes.io/tls"}),
    patches=((MERGE, {"stringData": {"extra": "1"}}),
             (JSON_PATCH, [{"op": "add", "path": "/data/x", "value": "eA=="}])),
    fields=("type=Opaque", "type=kubernetes.io/basic-auth"),
)  # fmt: skip
SERVICE = Kind(
    "Service", "/api/v1", "services", "v1",
    valid=({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
           {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"},
                               {"name": "metrics", "port": 9090}]}}),
    invalid=({"spec": {"ports": []}}, {"spec": {"ports": [{"port": 0}]}},
             {"spec": {"ports": [{"port": 80}, {"port": 81}]}},
             {"spec": {"type": "Bogus", "ports": [{"port": 80}]}}),
    mutations=({"spec": {"selector": {"app": "db"}}}, {"spec": {"ports": [{"port": 8080}]}}),
    patches=((STRATEGIC, {"spec": {"ports": [{"port": 9090, "name": "metrics"}]}}),
             (MERGE, {"spec": {"selector": {"tier": "a"}}})),
    statuses=({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
              {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}}),
)  # fmt: skip
# Deployments are created paused: the real deployment controller then makes no ReplicaSet and
# writes no revision annotation, only the status (left out of the comparison), so what is
# compared is the API server's alone.
DEPLOYMENT = Kind(
    "Deployment", "/apis/apps/v1", "deployments", "apps/v1",
    valid=({"spec": {"paused": True, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}},
           {"spec": {"paused": True, "replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                     "template": merged(TEMPLATE, {"spec": {"containers": [
                         {"name": "main", "image": "example/app", "env": [{"name": "A", "value": "1"}],
                          "ports": [{"name": "http", "containerPort": 8080}]}]}})}}),
    invalid=({"spec": {"paused": True, "template": TEMPLATE}},
             {"spec": {"paused": True, "selector": {"matchLabels": {"app": "db"}}, "template": TEMPLATE}},
             {"spec": {"paused": True, "selector": {"matchLabels": {"app": "web"}},
                       "template": merged(TEMPLATE, {"spec": {"containers": [{"name": "main"}]}})}},
             {"spec": {"paused": True, "replicas": -1, "selector": {"matchLabels": {"app": "web"}},
                       "template": TEMPLATE}}),
    mutations=({"spec": {"replicas": 3}}, {"spec": {"minReadySeconds": 5}},
               {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "example/app:2"}]}}}},
               {"spec": {"selector": {"matchLabels": {"app": "db"}}}}),
    patches=((STRATEGIC, {"spec": {"template": {"spec": {"containers": [
                 {"name": "main", "env": [{"name": "B", "value": "2"}]}]}}}}),
             (MERGE, {"spec": {"replicas": 2}}),
             (JSON_PATCH, [{"op": "replace", "path": "/spec/replicas", "value": 0}])),
)  # fmt: skip
CORE_EVENT = Kind(
    "Event", "/api/v1", "events", "v1",
    valid=({"involvedObject": REGARDING, "reason": "Created", "message": "made", "type": "Normal",
            "count": 1, "firstTimestamp": T0, "lastTimestamp": T1, "source": {"component": "parity"}},
           {"involvedObject": REGARDING, "reason": "Scaled", "message": "m", "type": "Warning",
            "eventTime": MICRO, "reportingComponent": "example.com/parity",
            "reportingInstance": "parity-1", "action": "Scale"}),
    invalid=({"involvedObject": {**REGARDING, "namespace": "elsewhere"}, "reason": "R"},
             {"involvedObject": REGARDING, "reason": "R", "eventTime": MICRO}),
    mutations=({"message": "changed"}, {"count": 2, "lastTimestamp": T1}),
    patches=((MERGE, {"count": 3}), (STRATEGIC, {"message": "patched"})),
    fields=("involvedObject.name=alpha", "involvedObject.kind=ConfigMap", "reason=Created",
            "type=Normal", "source=parity"),
)  # fmt: skip
EVENT = Kind(
    "Event", "/apis/events.k8s.io/v1", "events", "events.k8s.io/v1",
    valid=({"regarding": REGARDING, "reason": "Created", "note": "made", "type": "Normal",
            "eventTime": MICRO, "reportingController": "example.com/parity",
            "reportingInstance": "parity-1", "action": "Create"},
           {"regarding": REGARDING, "related": {"kind": "Pod", "name": "p", "namespace": "@ns"},
            "reason": "Again", "note": "n", "type": "Warning", "eventTime": MICRO,
            "series": {"count": 2, "lastObservedTime": MICRO},
            "reportingController": "example.com/parity", "reportingInstance": "parity-1",
            "action": "Retry"}),
    invalid=({"regarding": REGARDING, "reason": "R", "type": "Normal"},
             {"regarding": REGARDING, "reason": "R", "type": "Info", "eventTime": MICRO,
              "reportingController": "example.com/parity", "reportingInstance": "i", "action": "A"},
             {"regarding": REGARDING, "reason": "R", "type": "Normal", "eventTime": MICRO,
              "deprecatedCount": 3, "reportingController": "example.com/parity",
              "reportingInstance": "i", "action": "A"}),
    mutations=({"note": "changed"}, {"series": {"count": 3, "lastObservedTime": MICRO}}),
    patches=((MERGE, {"series": {"count": 4, "lastObservedTime": MICRO}}),
             (STRATEGIC, {"note": "patched"})),
    fields=("regarding.name=alpha", "regarding.kind=ConfigMap", "reason=Created", "type=Normal"),
)  # fmt: skip
MODEL_DEPLOYMENT = Kind(
    "ModelDeployment", "/apis/turnout.dev/v1alpha1", "modeldeployments", "turnout.dev/v1alpha1",
    valid=({"spec": {"model": MODEL}},
           {"spec": {"model": {"name": "iris", "alias": "champion"}, "replicas": 3,
                     "template": {"env": [{"name": "A", "value": "1"}]}}},
           {"spec": {"model": {"name": "iris", "stage": "Production", "color": "x"}, "extra": 1},
            "status": {"phase": "Healthy"}}),
    invalid=({"spec": {}}, {"spec": {"model": {**MODEL, "alias": "a"}}},
             {"spec": {"model": MODEL, "replicas": "two"}}, {"spec": {"model": MODEL, "replicas": 0}},
             {"spec": {"model": MODEL, "template": {"env": [{"name": "TURNOUT_X"}]}}}),
    mutations=({"spec": {"replicas": 5}}, {"spec": {"model": {"version": None, "alias": "champion"}}},
               {"spec": {"replicas": 0}}, {"spec": {"paused": True}}, {"status": {"phase": "Healthy"}},
               {"spec": {"model": {"alias": "x"}}}),
    patches=((MERGE, {"spec": {"replicas": None}}), (MERGE, {"spec": {"model": {"version": None, "stage": "P"}}}),
             (MERGE, {"spec": {"replicas": 101}}),
             (JSON_PATCH, [{"op": "add", "path": "/spec/template/env/-", "value": {"name": "B"}}])),
    statuses=({"phase": "Healthy", "message": "ok"}, {"phase": "Sleeping"},
              {"history": [{"version": "1", "color": "blue", "outcome": "Promoted", "retiredAt": None}]},
              {"conditions": [{"type": "Ready", "status": "True"}]}, {"observedGeneration": "x"}),
    builtin=False,
)  # fmt: skip
KINDS = (CONFIGMAP, SECRET, SERVICE, DEPLOYMENT, CORE_EVENT, EVENT, MODEL_DEPLOYMENT)
STORAGES = (CONFIGMAP, SECRET, SERVICE, DEPLOYMENT, CORE_EVENT, MODEL_DEPLOYMENT)  # one API each

NAMES = ("alpha", "beta", "gamma.delta")
BAD_NAMES = ("Bad_Name", "-lead", "x" * 254)
GENERATE_NAMES = ("gen-", "x" * 60 + "-")
# The last choice of each is invalid.
LABELS = ({}, {"app": "web"}, {"app": "db", "tier": "a"}, {"app": "web", "tier": "b"},
          {"bad key!": "x"})  # fmt: skip
ANNOTATIONS = ({}, {"note": "x"}, {"example.com/k": "v"}, {"Bad/Key/x": "v"})
FINALIZERS = ((), (), ("example.com/keep",), ("example.com/a", "example.com/b"),
              ("bad finalizer", "keep"))  # fmt: skip
LABEL_SELECTORS = ("", "app=web", "app!=web", "app in (web,db)", "app notin (web)", "app", "!app",
                   "app=web,tier=b", "app in web")  # fmt: skip
FIELD_SELECTORS = ("", "metadata.name=alpha", "metadata.name!=alpha", "metadata.namespace=@ns",
                   "spec.bogus=x")  # fmt: skip
PROPAGATION = (None, "Background", "Foreground", "Orphan")
PRECONDITIONS = (None, {"resourceVersion": "@rv{@key}"}, {"resourceVersion": "@stale{@key}"},
                 {"uid": "@uid{@key}"}, {"uid": "00000000-0000-4000-8000-0000000000ff"})  # fmt: skip
# What a PUT body cannot carry back as the test saw it (normalized placeholders).
READ_ONLY = ("resourceVersion", "creationTimestamp", "deletionTimestamp",
             "deletionGracePeriodSeconds", "generation", "managedFields")  # fmt: skip
