"""The Kubernetes API emulator (tests/kube) against the real kube-apiserver, side by side.

Hypothesis generates sequences of API calls over the kinds the operator uses — ConfigMap, Secret,
Service, Deployment, Event (core v1 and events.k8s.io/v1: one storage, so the same objects through
two APIs) and the ModelDeployment custom resource — and every call goes, as the same HTTP request,
to a `KubeEmulator` and to the real API server of `tests/real`; their answers must agree once
`tests/real/parity.py` has normalized what legitimately differs (uids, resourceVersion values,
timestamps, generated name suffixes). Calls: create (by name or generateName; labels, annotations,
finalizers, ownerReferences; invalid names, missing fields, wrong types), get, list with label and
field selectors, update with the current, a stale or no resourceVersion, merge / strategic / JSON
patches, status writes, delete (propagation policies, preconditions, finalizers), finalizer
removal. After a delete or a finalizer removal, the namespaces' whole content must agree too, once
the real garbage collector (asynchronous, where the emulator's is synchronous) has caught up.

Where they disagree the real server is right: the emulator is fixed. What the test leaves out on
purpose is said where it is left out. Each example runs in a namespace of its own (the same name on
both servers). `TURNOUT_PARITY_EXAMPLES=300` runs more examples, with a random seed (the default
run is derandomized, in CI too).
"""

from __future__ import annotations

import copy
import itertools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from tests.conftest import ROOT
from tests.kube.emulator import KubeEmulator
from tests.real import controlplane as cp
from tests.real.parity import Call, Side, compare, disagreement, items, poll

pytestmark = pytest.mark.real

Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
CRD = yaml.safe_load((ROOT / "crds" / "modeldeployments.turnout.dev.yaml").read_text())
EXAMPLES = int(os.environ.get("TURNOUT_PARITY_EXAMPLES", "0"))
PARITY = settings(
    max_examples=EXAMPLES or 12, stateful_step_count=25, derandomize=not EXAMPLES,
    deadline=None, database=None, suppress_health_check=list(HealthCheck),
)  # fmt: skip
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
_namespaces = itertools.count()


# --- the servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeEmulator]:
    with KubeEmulator(namespaces=()) as kube:
        kube.apply_crd(CRD)
        yield kube


@pytest.fixture(scope="module")
def sides(
    control_plane: cp.ControlPlane, crd: dict[str, object], emulator: KubeEmulator
) -> Iterator[tuple[Side, Side]]:
    with control_plane.http() as real, emulator.http() as emulated:
        yield Side("real", real), Side("emulator", emulated)


# --- the machine --------------------------------------------------------------------------------


class Parity(RuleBasedStateMachine):
    sides: tuple[Side, Side]

    def __init__(self) -> None:
        super().__init__()
        for side in self.sides:  # each example starts afresh
            side.generated.clear()
            side.uids.clear()
            side.rvs.clear()
            side.bases.clear()
        self.ns = f"parity-{next(_namespaces)}-{uuid.uuid4().hex[:5]}"
        self.known: dict[str, list[str]] = {kind.name: [] for kind in STORAGES}  # ever created
        self.alive: dict[str, set[str]] = {kind.name: set() for kind in STORAGES}  # now there
        self.created_by: dict[str, Kind] = {}  # an Event's name -> the API that created it
        self.generated = itertools.count(1)
        self.owned = False  # an ownerReference or a deletion finalizer was sent
        self.check(Call("POST", "/api/v1/namespaces", {"metadata": {"name": self.ns}}))

    def teardown(self) -> None:
        """Let go of what finalizers hold, then drop the namespace (not compared)."""
        for side in self.sides:
            for kind in STORAGES:
                listed = side.client.get(kind.collection(self.ns)).json().get("items", [])
                for obj in listed:
                    if obj["metadata"].get("finalizers"):
                        side.client.patch(
                            f"{kind.collection(self.ns)}/{obj['metadata']['name']}",
                            json={"metadata": {"finalizers": None}},
                            headers={"Content-Type": MERGE},
                        )
            side.client.delete(f"/api/v1/namespaces/{self.ns}")

    # --- comparing -------------------------------------------------------------------------------

    def check(self, call: Call) -> Obj:
        """Send `call` to both; they must agree. The (real) outcome, for what follows."""
        real, emulated = compare(self.sides, call)
        self.agree(call, real, emulated)
        return real

    def agree(self, call: Call, real: Any, emulated: Any) -> None:
        assert emulated == real, disagreement(call, real, emulated)

    def settle(self) -> None:
        """Wait, on each side, for the deployment controller to have seen each Deployment's last
        generation and to be done writing its status; take that as the resourceVersion seen."""
        for side, name in itertools.product(self.sides, sorted(self.alive["Deployment"])):
            url = f"{DEPLOYMENT.collection(self.ns)}/{side.actual_name(name)}"
            last: list[str] = []

            def quiet(side: Side = side, url: str = url, last: list[str] = last) -> bool:
                got = side.client.get(url)
                if got.status_code == 404:
                    return True
                obj = got.json()
                meta, status = obj["metadata"], obj.get("status") or {}
                if status.get("observedGeneration") != meta.get("generation"):
                    return False
                last.append(meta["resourceVersion"])
                if len(last) >= 2 and last[-1] == last[-2]:
                    side.see("Deployment", obj)
                    return True
                return False

            poll(quiet, timeout=15)

    def converge(self) -> None:
        """The namespace's whole content must agree, once the real garbage collector has caught
        up (the emulator's runs inside the write); what exists is known afresh."""
        paths = {kind.collection(self.ns): kind for kind in STORAGES if self.known[kind.name]}
        found: dict[str, Any] = {}

        def agree() -> bool:
            for side in self.sides:
                found[side.name] = items(side, iter(paths))
            return bool(found["real"] == found["emulator"])

        poll(agree, timeout=15)
        self.agree(Call("GET", f"(every kind in {self.ns})"), found["real"], found["emulator"])
        for path, kind in paths.items():
            self.alive[kind.name] = {obj["metadata"]["name"] for obj in found["real"][path]}

    def refresh(self, kind: Kind, name: str) -> None:
        """Whether the object is still there, after a write (asked of the real server)."""
        real = self.sides[0]
        there = real.client.get(f"{kind.collection(self.ns)}/{real.actual_name(name)}")
        (self.alive[kind.name].add if there.status_code == 200 else self.alive[kind.name].discard)(
            name
        )

    def key(self, kind: Kind, name: str) -> str:
        return f"{kind.name}/{name}"

    def pick(self, data: st.DataObject) -> tuple[Kind, str]:
        """An object to act on, through any API of its kind: mostly one that exists, at times
        one that does not."""
        there = [(kind, name) for kind in KINDS for name in sorted(self.alive[kind.name])]
        missing = [(CONFIGMAP, "missing"), (EVENT, "missing"), (MODEL_DEPLOYMENT, "missing")]
        return data.draw(st.sampled_from(there * 6 + missing), label="target")

    def pick_to_write(self, data: st.DataObject) -> tuple[Kind, str]:
        """An object to write to. An Event is written through the API that created it: a real
        server records which API version each manager wrote through (`managedFields`, which the
        emulator does not keep), so a write through the other API rewrites them and makes a new
        resourceVersion even where nothing else changes. Both APIs read every Event."""
        kind, name = self.pick(data)
        return self.created_by.get(name, kind) if kind.name == "Event" else kind, name

    def after_write(self, kind: Kind, name: str) -> None:
        self.settle()
        if self.owned:  # the garbage collector may have work to do
            self.converge()
        else:
            self.refresh(kind, name)

    # --- the rules -------------------------------------------------------------------------------

    @rule(data=st.data(), kind=st.sampled_from(KINDS))
    def create(self, data: st.DataObject, kind: Kind) -> None:
        """A create, valid three times in four; else one part of it is wrong."""
        wrong = data.draw(st.sampled_from([None] * 6 + ["name", "labels", "annotations",
                                           "finalizers", "body", "typemeta"]), label="wrong")  # fmt: skip
        # Service names: the emulator keeps the rule of Kubernetes 1.31 on purpose (DNS-1035
        # labels, tests/kube/names.py), the real server here is 1.37 (DNS-1123 labels since
        # 1.36): they reject different names, with different words, so Services get only names
        # both accept.
        service = kind is SERVICE
        meta: Obj = {}
        if wrong == "name" and not service:
            meta["name"] = data.draw(st.sampled_from((*BAD_NAMES, "Bad-")), label="name")
            if meta["name"] == "Bad-":
                meta = {"generateName": "Bad-"}
        elif data.draw(st.booleans(), label="generated"):
            meta["generateName"] = data.draw(
                st.sampled_from(GENERATE_NAMES[:2]), label="generateName"
            )
        else:
            meta["name"] = data.draw(st.sampled_from(NAMES[: 2 if service else 3]), label="name")
        for part, choices in (("labels", LABELS), ("annotations", ANNOTATIONS),
                              ("finalizers", FINALIZERS)):  # fmt: skip
            chosen = data.draw(st.sampled_from(choices[-1:] if wrong == part else choices[:-1]),
                               label=part)  # fmt: skip
            meta[part] = list(chosen) if part == "finalizers" else chosen
        owners = [(k, n) for k in STORAGES for n in self.known[k.name]] * 3 + [(CONFIGMAP, "gone")]
        if data.draw(st.sampled_from([False, False, False, True]), label="owned"):
            owner, name = data.draw(st.sampled_from(owners), label="owner")
            meta["ownerReferences"] = [{
                "apiVersion": owner.api_version, "kind": owner.name, "name": name,
                "uid": f"@uid{{{self.key(owner, name)}}}", "blockOwnerDeletion": True,
            }]  # fmt: skip
            self.owned = True
        body = data.draw(st.sampled_from(kind.invalid if wrong == "body" else kind.valid),
                         label="body")  # fmt: skip
        typed = wrong != "typemeta"
        obj = {**({"apiVersion": kind.api_version, "kind": kind.name} if typed else {}),
               **fill(body, ns=self.ns), "metadata": meta}  # fmt: skip
        logical = meta.get("name") or f"{meta['generateName']}@{next(self.generated)}"
        call = Call("POST", kind.collection(self.ns), obj)
        if "generateName" in meta:
            for side in self.sides:
                side.bases.add(meta["generateName"][:58])
        responses = [side.send(call) for side in self.sides]
        for side, response in zip(self.sides, responses, strict=True):
            if response.status_code == 201:
                side.learn(kind.name, response.json(), logical)
        outcomes = [side.outcome(r) for side, r in zip(self.sides, responses, strict=True)]
        self.agree(call, outcomes[0], outcomes[1])
        if outcomes[0]["code"] == 201:
            self.created_by[logical] = kind
            if logical not in self.known[kind.name]:
                self.known[kind.name].append(logical)
        self.after_write(kind, logical)

    @rule(data=st.data())
    def get(self, data: st.DataObject) -> None:
        kind, name = self.pick(data)
        self.check(Call("GET", f"{kind.collection(self.ns)}/{name}"))

    @rule(data=st.data(), kind=st.sampled_from(KINDS))
    def list(self, data: st.DataObject, kind: Kind) -> None:
        labels = data.draw(st.sampled_from(LABEL_SELECTORS), label="labelSelector")
        fields = data.draw(st.sampled_from(FIELD_SELECTORS + kind.fields), label="fieldSelector")
        params = tuple((k, fill(v, ns=self.ns)) for k, v in
                       (("labelSelector", labels), ("fieldSelector", fields)) if v)  # fmt: skip
        self.check(Call("GET", kind.collection(self.ns), params=params))

    def read_for_write(self, kind: Kind, name: str) -> Obj | None:
        """GET (compared), as a client does before writing back: the body it would send."""
        read = self.check(Call("GET", f"{kind.collection(self.ns)}/{name}"))
        if read["code"] != 200:
            return None
        body = copy.deepcopy(read["body"])
        for field in READ_ONLY:
            body["metadata"].pop(field, None)
        if kind is SERVICE:  # the allocated IPs, not sent back (the server keeps them)
            for ip in ("clusterIP", "clusterIPs"):
                body["spec"].pop(ip, None)
        return dict(body)

    @rule(data=st.data())
    def update(self, data: st.DataObject) -> None:
        """Read, modify, write back: with the resourceVersion read, an older one, or none."""
        kind, name = self.pick_to_write(data)
        body = self.read_for_write(kind, name)
        if body is None:
            return
        change = data.draw(st.sampled_from(COMMON_MUTATIONS + kind.mutations), label="change")
        body = merged(body, change)
        version = data.draw(st.sampled_from(["@rv", "@stale", None]), label="resourceVersion")
        if version:
            body["metadata"]["resourceVersion"] = f"{version}{{{self.key(kind, name)}}}"
        self.check(Call("PUT", f"{kind.collection(self.ns)}/{name}", body))
        self.after_write(kind, name)

    @rule(data=st.data())
    def patch(self, data: st.DataObject) -> None:
        kind, name = self.pick_to_write(data)
        content_type, patch = data.draw(
            st.sampled_from(COMMON_PATCHES + kind.patches), label="patch"
        )
        body = fill(patch, ns=self.ns, key=self.key(kind, name))
        self.check(Call("PATCH", f"{kind.collection(self.ns)}/{name}", body, content_type))
        self.after_write(kind, name)

    @rule(data=st.data())
    def write_status(self, data: st.DataObject) -> None:
        """A status write: a merge patch of /status, or a read-modify-write PUT of it. Kinds
        without a status subresource answer 404. (A Deployment's status is its controller's.)"""
        kind, name = self.pick_to_write(data)
        if kind is DEPLOYMENT:
            return
        url = f"{kind.collection(self.ns)}/{name}/status"
        status = data.draw(st.sampled_from(kind.statuses or ({"phase": "x"},)), label="status")
        if data.draw(st.booleans(), label="put"):
            body = self.read_for_write(kind, name)
            if body is None:
                return
            version = data.draw(st.sampled_from(["@rv", None]), label="resourceVersion")
            if version:
                body["metadata"]["resourceVersion"] = f"{version}{{{self.key(kind, name)}}}"
            self.check(Call("PUT", url, {**body, "status": status}))
        else:
            self.check(Call("PATCH", url, {"status": status}, MERGE))

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        kind, name = self.pick_to_write(data)
        propagation = data.draw(st.sampled_from(PROPAGATION), label="propagationPolicy")
        preconditions = data.draw(st.sampled_from(PRECONDITIONS), label="preconditions")
        in_query = data.draw(st.booleans(), label="in query")
        options: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        params: tuple[tuple[str, str], ...] = ()
        if propagation and in_query:
            params = (("propagationPolicy", propagation),)
        elif propagation:
            options["propagationPolicy"] = propagation
        if preconditions:
            options["preconditions"] = fill(preconditions, key=self.key(kind, name))
        body = options if len(options) > 2 else None
        self.check(Call("DELETE", f"{kind.collection(self.ns)}/{name}", body, params=params))
        self.owned = self.owned or propagation in ("Foreground", "Orphan")
        self.after_write(kind, name)


@pytest.mark.timeout(600)
def test_the_emulator_answers_as_the_real_api_server(sides: tuple[Side, Side]) -> None:
    machine = type("Parity", (Parity,), {"sides": sides})
    run_state_machine_as_test(machine, settings=PARITY)
