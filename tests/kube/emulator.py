"""A Kubernetes API server for integration tests: kmock over HTTP, our Store behind it, in a thread.

`KubeEmulator` is what tests use. It serves the API on 127.0.0.1 from its own thread and event loop:
a kopf operator started in the test's loop would cancel that loop's tasks when it stops, and the
synchronous `kubernetes` client must never run on the loop that serves it. The same objects are
reachable without HTTP (`create`, `get`, `list`, `patch`, `delete`, `events`), thread-safely, for
arranging and asserting; `requests` records every API call as RBAC sees it; `controller` brings
Deployments to life, `jobs` runs Jobs. See tests/kube/README.md for what is emulated and what is not.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp.web
import httpx

from tests.kube import patches
from tests.kube.api import ApiHandler, Call
from tests.kube.controller import DeploymentController
from tests.kube.jobs import JobController
from tests.kube.resources import CRD_GROUP, Obj, ResourceType, view
from tests.kube.selectors import label_selector
from tests.kube.store import Store


class KubeEmulator:
    def __init__(
        self, *, namespaces: tuple[str, ...] = ("default",), log_dir: Path | None = None
    ) -> None:
        self.store = Store()
        self._own_log_dir = log_dir is None
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="kube-emulator-"))
        self.controller = DeploymentController(self.store, self.log_dir)
        self.jobs = JobController(self.store, self.log_dir)
        self.api = ApiHandler(store=self.store, proxy_target=self.controller.proxy_port)
        self._url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve_forever, name="kube-api", daemon=True)
        for namespace in namespaces:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    # --- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> KubeEmulator:
        self._thread.start()
        if not self._started.wait(30) or self._failure is not None:
            raise RuntimeError("the Kubernetes API emulator did not start") from self._failure
        self.controller.start()
        self.jobs.start()
        return self

    def stop(self) -> None:
        """Stop the controller (killing its processes), then the HTTP server and its thread."""
        self.controller.stop()
        self.jobs.stop()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def _serve_forever(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()
            self._failure = exc
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = aiohttp.web.Server(self.api, access_log=None)  # `requests` is the access log
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)  # the OS picks a free port: no race
        await site.start()
        host, port = runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"
        async with self.api:  # starts kmock's stream feeder for DSL-defined streams
            self._started.set()
            await self._stop.wait()
            await self.api.close()
        await runner.cleanup()

    @property
    def url(self) -> str:
        return self._url

    def http(self, timeout: float = 30) -> httpx.Client:
        """An httpx client for this server (no credentials needed), e.g. for the service proxy."""
        return httpx.Client(base_url=self.url, timeout=timeout)

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        """A kubeconfig for this server (token auth, accepted as is); JSON is valid YAML."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
            "contexts": [{"name": "emulator", "context": {
                "cluster": "emulator", "user": "emulator", "namespace": namespace}}],
            "current-context": "emulator",
        }  # fmt: skip
        path.write_text(json.dumps(config, indent=2))
        return path

    # --- direct, thread-safe access for tests --------------------------------------------------------

    def _type(self, api_version: str, kind_or_plural: str) -> ResourceType:
        return self.store.find(api_version, kind_or_plural)

    def apply_crd(self, crd: Obj) -> Obj:
        """Create the CRD, or replace its spec if it exists; its resources are served at once."""
        rt = self._type(f"{CRD_GROUP}/v1", "customresourcedefinitions")
        if self.store.get(rt, None, crd["metadata"]["name"]) is None:
            return self.store.create(rt, None, crd)
        return self.store.update(
            rt, None, crd["metadata"]["name"], lambda current: {**current, "spec": crd["spec"]}
        )

    def create(self, obj: Obj) -> Obj:
        rt = self._type(obj["apiVersion"], obj["kind"])
        return self.store.create(rt, obj.get("metadata", {}).get("namespace"), obj)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        return self.store.get(self._type(api_version, kind), namespace, name)

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, labels: str | None = None
    ) -> list[Obj]:
        items, _ = self.store.list_objects(
            self._type(api_version, kind), namespace, label_selector(labels)
        )
        return items

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Obj,
        *,
        subresource: str | None = None,
    ) -> Obj:
        """A JSON merge patch, as `kubectl patch --type=merge` (add subresource="status" for status)."""
        return self.store.update(
            self._type(api_version, kind), namespace, name,
            lambda current: patches.merge_patch(current, patch), subresource=subresource,
        )  # fmt: skip

    def delete(
        self, api_version: str, kind: str, namespace: str | None, name: str, **options: Any
    ) -> Obj:
        return self.store.delete(self._type(api_version, kind), namespace, name, **options)

    def history(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> builtins.list[Obj]:
        """Every state the object went through (its watch events), oldest first: for asserting on
        what a controller wrote along the way, not only on where it ended."""
        rt = self._type(api_version, kind)
        return [
            view(rt, change.obj)
            for change in self.store.changes_since(0)
            if (change.group, change.plural) == rt.storage
            and change.obj["metadata"].get("namespace") == (namespace if rt.namespaced else None)
            and change.obj["metadata"]["name"] == name
        ]

    def events(
        self, namespace: str | None = None, involved_name: str | None = None
    ) -> builtins.list[Obj]:
        """Every Event, written through either API, as core v1 shows it, oldest first."""
        return events_about(self.list, namespace, involved_name)

    @property
    def requests(self) -> builtins.list[Call]:
        """Every resource API call so far (not discovery), as RBAC sees it."""
        return list(self.api.calls)


def events_about(
    lister: Callable[[str, str, str | None], list[Obj]],
    namespace: str | None,
    involved_name: str | None,
) -> list[Obj]:
    """Events about `involved_name` (any, if None), oldest first, as core v1 shows them;
    `lister(api_version, kind, namespace)` lists objects. Core v1 and events.k8s.io/v1 serve the
    same Events (one storage, converted), so listing core v1 finds each Event once, whichever
    API wrote it (`involvedObject` is events.k8s.io's `regarding`)."""
    found = [event for event in lister("v1", "Event", namespace)
             if involved_name in (None, (event.get("involvedObject") or {}).get("name"))]  # fmt: skip
    return sorted(found, key=lambda e: int(e["metadata"]["resourceVersion"]))
