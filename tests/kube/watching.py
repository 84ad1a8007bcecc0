"""Watch streams: the Store's change history rendered as the API server's JSON-lines watch events.

A watch starts either from "now" (an ADDED event per existing object first, as for
`resourceVersion=""`/`"0"`) or from a given resourceVersion (history replay, 410 `Expired` once that
version has fallen out of the kept history). Selectors apply to both the old and the new state, so
an object that stops matching a label selector is reported DELETED and one that starts matching is
ADDED, as a real API server does. `timeoutSeconds` ends the stream; so does the client going away.

Written as an async generator that kmock renders chunk by chunk; it never raises into kmock, since
the HTTP status line is long gone by then: problems become `ERROR` events, as in Kubernetes.
The emulator stopping (`stopped()`) ends every stream at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp.web

from tests.kube.resources import Obj, ResourceType, view
from tests.kube.store import Change, Gone, Store


def _status(code: int, reason: str, message: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "code": code, "reason": reason, "message": message}  # fmt: skip


def translate(
    change: Change, rt: ResourceType, namespace: str | None, select: Callable[[Obj], bool]
) -> Obj | None:
    """The event a watcher of (rt, namespace, select) gets for `change`, if any."""
    if (change.group, change.plural) != rt.storage:
        return None
    if namespace is not None and change.obj["metadata"].get("namespace", "") != namespace:
        return None
    now_in = select(change.obj)
    was_in = change.old is not None and select(change.old)
    kind = change.type
    if kind == "MODIFIED" and now_in != was_in:
        kind = "ADDED" if now_in else "DELETED"
    elif not (now_in or (kind == "DELETED" and was_in)):
        return None
    return {"type": kind, "object": view(rt, change.obj)}


async def watch_stream(
    store: Store,
    rt: ResourceType,
    namespace: str | None,
    select: Callable[[Obj], bool],
    params: dict[str, str],
    raw: aiohttp.web.BaseRequest,
    *,
    stopped: Callable[[], bool],
) -> AsyncIterator[Any]:
    yield b""  # send the headers now: clients wait for them before reading events
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def listener() -> None:  # called from whichever thread wrote to the store
        with contextlib.suppress(RuntimeError):  # the emulator's loop has already stopped
            loop.call_soon_threadsafe(wake.set)

    timeout = float(params.get("timeoutSeconds") or 0)
    deadline = loop.time() + timeout if timeout > 0 else None
    since = params.get("resourceVersion") or ""
    initial = params.get("sendInitialEvents", "").lower() in ("true", "t", "1")
    store.subscribe(listener)
    try:
        if since in ("", "0") or initial:
            items, last = store.list_objects(rt, namespace, select)
            for item in items:
                yield {"type": "ADDED", "object": item}
            if initial:
                meta = {"resourceVersion": str(last),
                        "annotations": {"k8s.io/initial-events-end": "true"}}  # fmt: skip
                yield {"type": "BOOKMARK",
                       "object": {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": meta}}  # fmt: skip
        elif since.isdigit():
            last = int(since)
        else:
            yield {"type": "ERROR", "object": _status(400, "BadRequest", f"bad rv: {since!r}")}
            return
        while True:
            wake.clear()
            try:
                changes = store.changes_since(last)
            except Gone:
                message = f"too old resource version: {last}"
                yield {"type": "ERROR", "object": _status(410, "Expired", message)}
                return
            for change in changes:
                last = change.rv
                event = translate(change, rt, namespace, select)
                if event is not None:
                    yield event
            if stopped() or raw.transport is None or raw.transport.is_closing():
                return
            remaining = 1.0 if deadline is None else deadline - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=min(remaining, 1.0))
    finally:
        store.unsubscribe(listener)
