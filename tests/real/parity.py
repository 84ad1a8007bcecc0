"""Sending one API call to the real API server and to the emulator, and comparing what comes back.

A `Call` is written once, in logical terms: object names as the test knows them (a name the server
generated from `generateName` is known as `<generateName>@<n>` until each server has chosen its
own), and placeholders for what differs by server, `@uid{Kind/name}`, `@rv{Kind/name}` (the
resourceVersion the test saw last) and `@stale{Kind/name}` (an older one). Each `Side` translates
the call into its server's values, sends the same request (method, path, query, body bytes,
Content-Type) with its httpx client, and maps the answer back: its generated names and uids to the
logical ones, then `normalize` removes what legitimately differs between two servers:
`managedFields` (the emulator keeps none), timestamps (present or not), uids, resourceVersion values
(kept as `new`, `changed` or `unchanged` against the one the test saw last for that object), and
`null` members (Go's encoding of an unset time or struct; a client reads no value either way).
What only controllers write is removed too: a Deployment's `status` (the real deployment controller
writes it; the emulator's stand-in writes its own), a Service's allocated cluster IPs, and the
`kube-root-ca.crt` ConfigMap the real controller manager puts into every namespace.

Nothing here decides what to send: the test (test_emulator_parity.py) generates the calls.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

Obj = dict[str, Any]
TOKEN = re.compile(r"^@(uid|rv|stale)\{(.+)\}$")
DANGLING_UID = "00000000-0000-4000-8000-000000000001"  # owns nothing on either server
CONTROLLER_MADE = {("ConfigMap", "kube-root-ca.crt")}  # published into each namespace
REPORTERS = {"parity", "example.com/parity"}  # the test's Events; the control plane posts others
# resourceVersion values in a failed precondition's message
PRECONDITION_RV = re.compile(r"(ResourceVersion in (?:the precondition|record) )\(\d+\)")


@dataclass(frozen=True)
class Call:
    """One request in logical terms; `path` names objects by their logical names."""

    method: str
    path: str
    body: Any = None
    content_type: str = "application/json"
    params: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params)
        body = "" if self.body is None else f" {json.dumps(self.body, sort_keys=True)}"
        return (
            f"{self.method} {self.path}{'?' + query if query else ''} [{self.content_type}]{body}"
        )


@dataclass
class Side:
    """One server as the test sees it: its client and what its values are in logical terms."""

    name: str
    client: httpx.Client
    # Objects are known by `Kind/name` with their logical name (Events of both APIs are one kind:
    # the same objects).
    generated: dict[str, str] = field(default_factory=dict)  # actual name -> logical name
    uids: dict[str, str] = field(default_factory=dict)  # actual uid -> `Kind/name`
    rvs: dict[str, list[str]] = field(default_factory=dict)  # `Kind/name` -> rvs seen, in order
    # generateName values sent: a name generated from one that the server then refused is
    # known only by its base (`<base><suffix>`)
    bases: set[str] = field(default_factory=set)

    # --- logical -> actual ---------------------------------------------------------------------

    def actual_name(self, logical: str) -> str:
        return next((a for a, lg in self.generated.items() if lg == logical), logical)

    def _resolve(self, token: str) -> str:
        match = TOKEN.match(token)
        if match is None:
            return self.actual_name(token)
        what, key = match[1], match[2]
        if what == "uid":  # the latest object of that name
            return next((u for u, k in reversed(self.uids.items()) if k == key), DANGLING_UID)
        seen = self.rvs.get(key, [])
        if what == "rv":
            return seen[-1] if seen else "1"
        older = [rv for rv in seen if rv != seen[-1]] if seen else []
        return older[-1] if older else "1"

    def translate(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._resolve(value)
        if isinstance(value, list):
            return [self.translate(v) for v in value]
        if isinstance(value, dict):
            return {k: self.translate(v) for k, v in value.items()}
        return value

    # --- the request ---------------------------------------------------------------------------

    def send(self, call: Call) -> httpx.Response:
        path = "/".join(self.actual_name(segment) for segment in call.path.split("/"))
        content = None if call.body is None else json.dumps(self.translate(call.body)).encode()
        return self.client.request(
            call.method, path, content=content, params=dict(call.params),
            headers={"Content-Type": call.content_type},
        )  # fmt: skip

    # --- actual -> logical ---------------------------------------------------------------------

    def key(self, kind: str, obj: Obj) -> str:
        name = (obj.get("metadata") or {}).get("name", "")
        return f"{kind}/{self.generated.get(name, name)}"

    def learn(self, kind: str, obj: Obj, logical_name: str) -> None:
        """Remember a created object's uid and, if the server generated its name, which
        logical name that is."""
        meta = obj.get("metadata") or {}
        if meta.get("name") != logical_name:
            self.generated[meta["name"]] = logical_name
        if meta.get("uid"):
            self.uids[meta["uid"]] = self.key(kind, obj)

    def logical(self, value: Any) -> Any:
        """Generated names and uids replaced by their logical names, in any string."""
        if isinstance(value, str):
            for actual, logical in self.generated.items():
                value = value.replace(actual, logical)
            for uid, key in self.uids.items():
                value = value.replace(uid, f"@uid{{{key}}}")
            value = PRECONDITION_RV.sub(r"\1(<rv>)", value)
            for base in self.bases:
                value = re.sub(
                    re.escape(base) + "[a-z0-9]{5}(?![a-z0-9])", base + "<suffix>", value
                )
            return value
        if isinstance(value, list):
            return [self.logical(v) for v in value]
        if isinstance(value, dict):
            return {k: self.logical(v) for k, v in value.items() if v is not None}
        return value

    def see(self, kind: str, obj: Obj, *, compare: bool = True) -> str:
        """`new`, `changed` or `unchanged`: the object's resourceVersion against the last seen."""
        key = self.key(kind, obj)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        seen = self.rvs.setdefault(key, [])
        if not compare:
            return "<rv>"
        verdict = "new" if not seen else "unchanged" if seen[-1] == rv else "changed"
        if rv and (not seen or seen[-1] != rv):
            seen.append(rv)
        return verdict

    def outcome(self, response: httpx.Response) -> Obj:
        """The answer as compared: the code, and the normalized object, list or Status."""
        try:
            body = response.json()
        except ValueError:
            return {"code": response.status_code, "text": response.text}
        if isinstance(body, dict) and body.get("kind") == "Status":
            details = body.get("details") or {}
            if body.get("status") == "Success":  # a deleted object's uid
                return {"code": response.status_code, "body": self.logical(body)}
            return self.logical({
                "code": response.status_code, "status": body.get("status"),
                "reason": body.get("reason"), "message": body.get("message"),
                "causes": details.get("causes"),
            })  # fmt: skip
        return {"code": response.status_code, "body": self.normalize(body)}

    def normalize(self, doc: Any, *, track: bool = True) -> Any:
        doc = copy.deepcopy(doc)
        if isinstance(doc, dict) and isinstance(doc.get("items"), list):
            doc.get("metadata", {}).pop("resourceVersion", None)
            kind = str(doc.get("kind", "")).removesuffix("List")  # items of built-in lists
            doc["items"] = [  # carry no kind
                self._normalize_object(kind, item, track) for item in doc["items"]
                if not controller_made(kind, item)
            ]  # fmt: skip
            # Both servers list by name; generated names sort by their random suffixes.
            doc["items"].sort(key=lambda item: item["metadata"]["name"])
            return self.logical(doc)
        if isinstance(doc, dict) and "metadata" in doc:
            return self._normalize_object(str(doc.get("kind", "")), doc, track)
        return self.logical(doc)

    def _normalize_object(self, kind: str, obj: Obj, track: bool) -> Obj:
        meta = obj.setdefault("metadata", {})
        meta.pop("managedFields", None)
        if meta.get("uid"):  # known by the key it was first seen under
            self.uids.setdefault(meta["uid"], self.key(kind, obj))
        for stamp in ("creationTimestamp", "deletionTimestamp"):
            if meta.get(stamp):
                meta[stamp] = "<time>"
        if "resourceVersion" in meta:
            meta["resourceVersion"] = self.see(kind, obj, compare=track)
        if kind == "Deployment":
            obj.pop("status", None)
        if kind == "Service":
            spec = obj.get("spec") or {}
            for ip in ("clusterIP", "clusterIPs"):
                if ip in spec and spec[ip] != "None":
                    spec[ip] = "<allocated>"
        return dict(self.logical(obj))


def controller_made(kind: str, obj: Obj) -> bool:
    """What the real control plane's controllers write into a namespace by themselves."""
    if kind == "Event":
        reporter = obj.get("reportingComponent") or obj.get("reportingController")
        source = (obj.get("source") or obj.get("deprecatedSource") or {}).get("component")
        return (reporter or source) not in REPORTERS
    return (kind, obj["metadata"]["name"]) in CONTROLLER_MADE


def compare(sides: tuple[Side, Side], call: Call) -> tuple[Obj, Obj]:
    """Send `call` to both servers; both outcomes, normalized. The caller asserts they agree."""
    responses = [side.send(call) for side in sides]
    outcomes = [side.outcome(response) for side, response in zip(sides, responses, strict=True)]
    return outcomes[0], outcomes[1]


def poll(probe: Callable[[], bool], timeout: float) -> bool:
    """Poll until `probe()` holds or `timeout` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def items(side: Side, paths: Iterator[str]) -> dict[str, Any]:
    """Every object under `paths` (collection URLs), normalized, resourceVersions not compared."""
    return {path: side.normalize(side.client.get(path).json(), track=False).get("items")
            for path in paths}  # fmt: skip


def differences(real: Any, emulated: Any, path: str = "") -> list[str]:
    """Where two outcomes differ, one line each (for the failure message)."""
    if isinstance(real, dict) and isinstance(emulated, dict):
        return [line for key in sorted(set(real) | set(emulated), key=str)
                for line in differences(real.get(key, "<absent>"), emulated.get(key, "<absent>"),
                                        f"{path}.{key}" if path else str(key))]  # fmt: skip
    if isinstance(real, list) and isinstance(emulated, list) and len(real) == len(emulated):
        return [line for i, (r, e) in enumerate(zip(real, emulated, strict=True))
                for line in differences(r, e, f"{path}[{i}]")]  # fmt: skip
    if real == emulated:
        return []
    return [
        f"{path or '<root>'}: real {json.dumps(real)[:600]} / emulator {json.dumps(emulated)[:600]}"
    ]


def disagreement(call: Call, real: Any, emulated: Any) -> str:
    lines = "\n  ".join(differences(real, emulated))
    return f"{call.describe()}\n  {lines}"
