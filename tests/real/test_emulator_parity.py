"""The Kubernetes API emulator (tests/kube) against the real kube-apiserver, side by side.

Hypothesis generates sequences of API calls over the kinds the operator uses — ConfigMap, Secret,
Service, Deployment, Event (core v1 and events.k8s.io/v1: one storage, so the same objects through
two APIs) and the ModelDeployment custom resource — and every call goes, as the same HTTP request,
to a `KubeEmulator` and to the real API server of `tests/real`; their answers must agree once
`tests/real/parity.py` has normalized what legitimately differs (uids, resourceVersion values,
timestamps, generated name suffixes). What is sent to each kind is in `parity_calls.py`. Calls:
create (by name or generateName; labels, annotations, finalizers, ownerReferences; invalid names,
missing fields, wrong types), get, list with label and field selectors, update with the current, a
stale or no resourceVersion, merge / strategic / JSON patches, status writes, delete (propagation
policies, preconditions, finalizers), finalizer removal. Once the garbage collector has work (an
ownerReference or an orphan/foreground deletion was sent), the namespace's whole content must
agree after every write too, when the real collector (asynchronous, where the emulator's runs
inside the write) has caught up.

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
from collections.abc import Iterable, Iterator
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
from tests.real.parity_calls import (
    ANNOTATIONS,
    BAD_NAMES,
    COMMON_MUTATIONS,
    COMMON_PATCHES,
    CONFIGMAP,
    DEPLOYMENT,
    EVENT,
    FIELD_SELECTORS,
    FINALIZERS,
    GENERATE_NAMES,
    KINDS,
    LABEL_SELECTORS,
    LABELS,
    MERGE,
    MODEL_DEPLOYMENT,
    NAMES,
    PRECONDITIONS,
    PROPAGATION,
    READ_ONLY,
    SERVICE,
    STORAGES,
    Kind,
    fill,
    merged,
)

pytestmark = pytest.mark.real

Obj = dict[str, Any]
CRD = yaml.safe_load((ROOT / "crds" / "modeldeployments.turnout.dev.yaml").read_text())
EXAMPLES = int(os.environ.get("TURNOUT_PARITY_EXAMPLES", "0"))
PARITY = settings(
    max_examples=EXAMPLES or 20, stateful_step_count=25, derandomize=not EXAMPLES,
    deadline=None, database=None, suppress_health_check=list(HealthCheck),
)  # fmt: skip
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

    def settle(self, names: Iterable[str]) -> None:
        """Wait, on each side, for the deployment controller to have seen these Deployments' last
        generation and to be done writing their status; take that as the resourceVersion seen."""
        for side, name in itertools.product(self.sides, sorted(names)):
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
        """Let what follows a write happen: the garbage collector (then every Deployment may have
        moved) or only the deployment controller of the Deployment written."""
        if self.owned:  # the garbage collector may have work to do
            self.converge()
            self.settle(self.alive["Deployment"])
        else:
            self.refresh(kind, name)
            self.settle([name] if kind is DEPLOYMENT and name in self.alive["Deployment"] else [])

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
        # An owner that never existed is rare: the real garbage collector can take seconds to
        # find it missing (the namespace's content is compared once it has).
        owners = [(k, n) for k in STORAGES for n in self.known[k.name]] * 8 + [(CONFIGMAP, "gone")]
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
