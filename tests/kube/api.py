"""The HTTP face of the emulator: a kmock `KubernetesScaffold` whose fallback reaction serves the Store.

kmock gives us the aiohttp request handler, Kubernetes-style `Status` errors, API discovery
(`/api`, `/apis`, `/apis/<group>/<version>` built from `handler.resources`) and its reaction DSL, so a
test can still inject faults with higher priority than the emulation, e.g.
`kube.api["list", kmock.resource("apps", "v1", "deployments")] << 500`.

We replace two things of kmock 0.8 (see README): its URL parser (it fails on `/api/v1/namespaces`
and reads `/api/v1/namespaces/x` as a namespace, not an object) and its object store (no resource
versions, selectors, status isolation, generations, JSON-patch `test`, or garbage collection). This
module translates HTTP to Store calls and back and never holds API semantics itself.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiohttp.web
import attrs
import kmock
from kmock import KubernetesError

from tests.kube import decoding, patches
from tests.kube.resources import VERBS, Obj, ResourceType
from tests.kube.selectors import field_selector, label_selector
from tests.kube.store import Store, name_mismatch, not_found
from tests.kube.watching import watch_stream

# (namespace, service name, port from the URL) -> the local TCP port to forward to, or None.
ProxyResolver = Callable[[str, str, str, str], int | None]  # plural, namespace, name, port
# What the service proxy does not pass on, as kube-apiserver: `Authorization`, deleted once the
# caller is authenticated (k8s.io/apiserver/pkg/endpoints/filters/authentication.go:
# `req.Header.Del("Authorization")`), and the hop-by-hop headers Go's httputil.ReverseProxy
# removes (its `hopHeaders`); Content-Length is set again for the body sent.
NOT_FORWARDED = frozenset({
    "authorization", "connection", "proxy-connection", "keep-alive", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "content-length",
})  # fmt: skip


# The kinds whose registry answers a delete with the deleted object (`ReturnDeletedObject`).
RETURNS_DELETED = {("", "services"), ("", "pods"), ("", "namespaces")}


@dataclass
class Call:
    """One API request as RBAC would see it: `verb` on `group`/`resource`[/`subresource`]."""

    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str | None
    name: str | None
    method: str
    path: str
    code: int | None = None  # the HTTP status answered (200 while a watch is streaming)
    at: float = field(default_factory=time.perf_counter)  # when it arrived


@dataclass(frozen=True)
class ApiPath:
    group: str
    version: str
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None  # the first segment after the name: status, proxy, ...
    subpath: str = ""  # everything after the subresource (the proxied path)


def parse_path(path: str) -> ApiPath | None:
    """`/api/v1/...` or `/apis/<group>/<version>/...`, namespaces included; None otherwise."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 2:  # `/apis/<group>` too, for kmock's discovery
        group, version, rest = parts[1], (parts[2:3] or [""])[0], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return ApiPath(group, version)
    sub = rest[2] if len(rest) > 2 else None
    subpath = ""
    if len(rest) > 3:  # the proxied path keeps its trailing slash
        subpath = "/" + "/".join(rest[3:]) + ("/" if path.endswith("/") else "")
    name = rest[1] if len(rest) > 1 else None
    return ApiPath(group, version, rest[0], namespace, name, sub, subpath)


def verb_of(method: str, api: ApiPath, params: dict[str, str]) -> str:
    if api.subresource == "proxy":
        return {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method, method.lower())  # fmt: skip
    if method == "GET":
        watch = params.get("watch", "").lower() in ("true", "t", "1")  # Go's ParseBool
        return "watch" if watch else "get" if api.name else "list"
    if method == "DELETE":
        return "delete" if api.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


PROXIED = frozenset({("", "services"), ("", "pods")})  # the proxy subresources served

KMOCK_ACTIONS = {
    "get": kmock.action.FETCH, "list": kmock.action.LIST, "watch": kmock.action.WATCH,
    "create": kmock.action.CREATE, "patch": kmock.action.UPDATE, "delete": kmock.action.DELETE,
}  # fmt: skip


def reply(
    payload: Any, status: int = 200, content_type: str = "application/json"
) -> kmock.Response:
    """Every answer sets its status and Content-Type explicitly: kmock 0.8 copies a returned
    Response's status and headers onto the reaction's own Response, where they stay for the next
    request (a 201 from a create would otherwise leak into the following patch)."""
    return kmock.Response(status=status, payload=payload, headers={"Content-Type": content_type})


def status_body(code: int, reason: str, message: str, details: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "code": code, "reason": reason, "message": message, "details": details or {}}  # fmt: skip


@attrs.define(kw_only=True)
class ApiHandler(kmock.KubernetesScaffold):
    store: Store
    calls: list[Call] = attrs.field(factory=list)
    proxy_target: ProxyResolver | None = None
    closing: bool = False
    _session: aiohttp.ClientSession | None = None
    _own: frozenset[int] = frozenset()  # ids of the emulation's own reactions

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()  # kmock's discovery routes and its 404 catch-all
        self.fallback[self._is_resource_request] << self._serve
        self._own = frozenset(id(payload) for payload in self._payloads)
        self.store.types_changed.append(self._sync_discovery)
        self._sync_discovery()

    # --- kmock integration --------------------------------------------------------------------------

    def _sync_discovery(self) -> None:
        with self.store.lock:
            self.resources.clear()
            for rt in self.store.types():
                self.resources[kmock.resource(rt.group, rt.version, rt.plural)] = kmock.ResourceInfo(
                    kind=rt.kind, singular=rt.singular, namespaced=rt.namespaced, verbs=set(VERBS),
                    shortnames=set(rt.short_names), categories=set(rt.categories),
                    subresources={"status"} if rt.status_subresource else set(),
                )  # fmt: skip

    def _get_resources(self) -> list[kmock.resource]:
        with self.store.lock:  # CRDs may be (un)registered from another thread meanwhile
            return [res for res in self.resources if isinstance(res, kmock.resource)]

    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        result = await super()._serve_version(request)
        if isinstance(result, dict):  # kmock says "/v1" for the core group
            result["groupVersion"] = result["groupVersion"].lstrip("/")
        return result

    @staticmethod
    def _is_resource_request(request: kmock.Request) -> bool:
        return request.resource is not None and request.resource.plural is not None

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """kmock's own entry point parses the URL with a parser that breaks on namespaces; this one
        builds the same `kmock.Request` from our parser and records the RBAC view of the call."""
        body = await raw.read()
        params = dict(raw.query)
        api = parse_path(raw.path)
        call: Call | None = None
        verb = None
        if api is not None and api.plural is not None:
            verb = verb_of(raw.method, api, params)
            call = Call(verb, api.group, api.plural, api.subresource or "", api.namespace, api.name,
                        raw.method, raw.path)  # fmt: skip
            self.calls.append(call)
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        url = raw.url
        if api is None or api.plural is None:  # discovery: the Python client asks for `/apis/`
            url = url.with_path(raw.path.rstrip("/") or "/")
        request = kmock.Request(
            id=len(self._requests), raw_request=raw, url=url, method=raw.method, params=params,
            headers=dict(raw.headers), cookies=dict(raw.cookies), body=body,
            text=body.decode(errors="replace"), data=data, action=KMOCK_ACTIONS.get(verb or ""),
            resource=None if api is None else kmock.resource(
                group=api.group, version=api.version or None, plural=api.plural
            ),
            namespace=None if api is None else api.namespace,
            name=None if api is None else api.name,
            subresource=None if api is None else api.subresource,
        )  # fmt: skip
        self._forget_served()
        self._requests.append(request)
        if call is not None and verb == "watch":
            call.code = 200  # provisional: a watch is answered only when it ends
        try:
            response = await self._handle(request)
        except Exception as exc:
            prepared = exc.args[0] if exc.args else None  # kmock's wrapper for mid-stream errors
            if isinstance(prepared, aiohttp.web.StreamResponse) and prepared.prepared:
                response = prepared
            else:
                response = await self._render_error(exc)
        if call is not None:
            call.code = response.status
        return response

    def _forget_served(self) -> None:
        """Drop kmock's log of the requests served while only the emulation's own reactions exist.

        kmock 0.8 keeps every request and routes a new one by walking them all through each
        reaction's filters (`request in payload._source`): quadratic, and after some thousand
        requests each answer waited on the walk (a reconcile of ~15 calls took 0.6 s). Nothing
        reads that log but a reaction a test injects (its slices count the requests it matched);
        `calls` is the emulator's own record. Once a test has injected one, the log is kept, so
        `kube.api[...][:1] << 503` fails the next matching request, and only that one."""
        if all(id(payload) in self._own for payload in self._payloads):
            self._requests.clear()
            for payload in self._payloads:
                payload._requests.clear()

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, KubernetesError):
            body = status_body(exc.status, exc.reason or "", exc.message or "", exc.details)
            return aiohttp.web.json_response(body, status=exc.status)
        message = "".join(traceback.format_exception(exc))
        return aiohttp.web.json_response(status_body(500, "InternalError", message, {}), status=500)

    async def close(self) -> None:
        """End the open watch streams now (rather than at their next idle check) and the proxy."""
        self.closing = True
        self.store.notify()
        if self._session is not None:
            await self._session.close()

    # --- the emulation ------------------------------------------------------------------------------

    def _type(self, api: ApiPath) -> ResourceType:
        rt = self.store.resolve(api.group, api.version, api.plural or "")
        if rt is None or (api.namespace is not None and not rt.namespaced):
            raise KubernetesError(
                status=404, reason="NotFound", details={},
                message="the server could not find the requested resource",
            )  # fmt: skip
        return rt

    async def _serve(self, request: kmock.Request) -> kmock.Response:
        result = await self._dispatch(request)
        return result if isinstance(result, kmock.Response) else reply(result)

    async def _dispatch(self, request: kmock.Request) -> Any:
        api = parse_path(request.url.path)
        assert api is not None and api.plural is not None  # guaranteed by _is_resource_request
        rt = self._type(api)
        method = request.method.value
        if api.subresource == "proxy" and (rt.group, rt.plural) in PROXIED and api.name:
            return await self._proxy(request, rt, api)
        if api.subresource not in (None, "status") or (
            api.subresource == "status" and not rt.status_subresource
        ):
            raise KubernetesError(status=404, reason="NotFound", details={},
                                  message="the server could not find the requested resource")  # fmt: skip
        verb = verb_of(method, api, dict(request.params))
        if "dryRun" in request.params:  # refused loudly rather than written for real
            raise KubernetesError(status=400, reason="BadRequest", details={},
                                  message="dryRun is not emulated")  # fmt: skip
        if verb == "watch":
            return reply(self._watch(request, rt, api))
        if verb == "list":
            return self._list(request, rt, api)
        if verb == "get" and api.name:
            obj = self.store.get(rt, api.namespace, api.name)
            if obj is None:
                raise not_found(rt, api.name)
            return obj
        if verb == "create" and not api.name:
            return reply(self._create(request, rt, api), status=201)
        if verb == "update" and api.name:
            body = request.data if isinstance(request.data, dict) else {}
            self._decode(request, rt, body)
            named = (body.get("metadata") or {}).get("name")
            if named and named != api.name:  # the handler checks it before anything is read
                raise name_mismatch(rt, api.name, named)
            if not rt.builtin and not (body.get("metadata") or {}).get("resourceVersion"):
                raise unconditional_update(rt, api.name)
            return self.store.update(rt, api.namespace, api.name, lambda current: body,
                                     subresource=api.subresource)  # fmt: skip
        if verb == "patch" and api.name:
            return self._patch(request, rt, api)
        if verb == "delete" and api.name:
            return self._delete(request, rt, api.namespace, api.name)
        if verb == "deletecollection":
            items, _ = self.store.list_objects(rt, api.namespace, self._selector(request, rt))
            propagation = self._delete_options(request).get("propagationPolicy")
            deleted = [self.store.delete(rt, i["metadata"].get("namespace"), i["metadata"]["name"],
                                         propagation=propagation) for i in items]  # fmt: skip
            return self._list_body(rt, deleted, self.store.resource_version)
        raise KubernetesError(status=405, reason="MethodNotAllowed", details={},
                              message="the server does not allow this method on the requested resource")  # fmt: skip

    def _selector(self, request: kmock.Request, rt: ResourceType) -> Callable[[Obj], bool]:
        labels = label_selector(request.params.get("labelSelector"))
        fields = field_selector(request.params.get("fieldSelector"), rt.group, rt.plural,
                                builtin=rt.builtin)  # fmt: skip
        return lambda obj: labels(obj) and fields(obj)

    @staticmethod
    def _list_body(rt: ResourceType, items: list[Obj], rv: int) -> Obj:
        """A list; a custom resource's (unstructured) says `continue: ""` when complete."""
        meta = {"resourceVersion": str(rv), **({} if rt.builtin else {"continue": ""})}
        if rt.builtin:  # a typed list's items carry no apiVersion and kind
            items = [{k: v for k, v in i.items() if k not in ("apiVersion", "kind")} for i in items]
        return {"apiVersion": rt.api_version, "kind": f"{rt.kind}List", "metadata": meta,
                "items": items}  # fmt: skip

    def _list(self, request: kmock.Request, rt: ResourceType, api: ApiPath) -> Obj:
        # `limit` is ignored, as the API allows: everything comes in one chunk with no `continue`.
        items, rv = self.store.list_objects(rt, api.namespace, self._selector(request, rt))
        return self._list_body(rt, items, rv)

    def _watch(self, request: kmock.Request, rt: ResourceType, api: ApiPath) -> AsyncIterator[Any]:
        selected = self._selector(request, rt)
        named = api.name

        def select(obj: Obj) -> bool:
            return selected(obj) and named in (None, obj["metadata"]["name"])

        raw = request._raw_request
        assert raw is not None
        return watch_stream(self.store, rt, api.namespace, select, dict(request.params), raw,
                            stopped=lambda: self.closing)  # fmt: skip

    def _create(self, request: kmock.Request, rt: ResourceType, api: ApiPath) -> Obj:
        body = request.data
        if not isinstance(body, dict):
            raise KubernetesError(status=400, reason="BadRequest", details={},
                                  message="the request body is not a JSON object")  # fmt: skip
        if rt.namespaced and api.namespace is None:
            raise KubernetesError(status=405, reason="MethodNotAllowed", details={},
                                  message=f"create {rt.plural} needs a namespace in the URL")  # fmt: skip
        self._decode(request, rt, body)
        body_ns = body.get("metadata", {}).get("namespace")
        if rt.namespaced and body_ns not in (None, "", api.namespace):
            raise KubernetesError(
                status=400, reason="BadRequest", details={},
                message="the namespace of the provided object does not match the namespace sent "
                "on the request",
            )  # fmt: skip
        return self.store.create(rt, api.namespace, body)

    @staticmethod
    def _decode(request: kmock.Request, rt: ResourceType, body: Obj) -> None:
        decoding.check_body(rt.group, rt.version, rt.plural, rt.kind, body, request.text,
                            builtin=rt.builtin)  # fmt: skip

    def _patch(self, request: kmock.Request, rt: ResourceType, api: ApiPath) -> Obj:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        patch = request.data
        apply: Callable[[Obj], Obj]
        if content_type == patches.STRATEGIC and not rt.builtin:
            raise KubernetesError(
                status=415, reason="UnsupportedMediaType", details={},
                message="the body of the request was in an unknown format - accepted media types "
                f"include: {patches.JSON}, {patches.MERGE}, {patches.APPLY}",
            )  # fmt: skip
        if content_type not in (patches.MERGE, patches.JSON, patches.STRATEGIC):
            # server-side apply (application/apply-patch+yaml) is not emulated
            raise KubernetesError(status=415, reason="UnsupportedMediaType", details={},
                                  message="415: Unsupported Media Type")  # fmt: skip
        patches.decode_patch(content_type, patch)
        if content_type == patches.MERGE:
            apply = lambda current: patches.merge_patch(current, patch)  # noqa: E731
        elif content_type == patches.JSON:
            apply = lambda current: patches.json_patch(current, patch)  # noqa: E731
        else:
            apply = lambda current: patches.strategic_merge(current, patch or {})  # noqa: E731
        assert api.name is not None
        return self.store.update(rt, api.namespace, api.name, apply, subresource=api.subresource)

    @staticmethod
    def _delete_options(request: kmock.Request) -> Obj:
        """DeleteOptions from the body; from the query only when there is no body (the
        handler decodes one or the other, so a body's options win whole)."""
        if request.body:
            return request.data if isinstance(request.data, dict) else {}
        return dict(request.params)

    def _delete(self, request: kmock.Request, rt: ResourceType, ns: str | None, name: str) -> Obj:
        """A deleted object is answered as the registry answers it: a Service as it was, other
        kinds by a `Success` Status; one only marked for deletion as it now is."""
        options = self._delete_options(request)
        propagation = options.get("propagationPolicy")
        preconditions = options.get("preconditions") or {}
        obj, gone = self.store.delete_object(
            rt, ns, name, propagation=propagation,
            precondition_rv=preconditions.get("resourceVersion"),
            precondition_uid=preconditions.get("uid"),
        )  # fmt: skip
        if not gone or rt.storage in RETURNS_DELETED:
            return obj
        details = {"name": name, **({"group": rt.group} if rt.group else {}), "kind": rt.plural,
                   "uid": obj["metadata"]["uid"]}  # fmt: skip
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details}  # fmt: skip

    async def _proxy(self, request: kmock.Request, rt: ResourceType, api: ApiPath) -> Any:
        assert api.name is not None and api.namespace is not None
        name, _, port = api.name.partition(":")
        if self.store.get(rt, api.namespace, name) is None:
            raise not_found(rt, name)
        target = (
            self.proxy_target(rt.plural, api.namespace, name, port) if self.proxy_target else None
        )
        if target is None and rt.plural == "services":
            raise KubernetesError(
                status=503, reason="ServiceUnavailable", details={"name": name, "kind": "services"},
                message=f'no endpoints available for service "{name}"',
            )  # fmt: skip
        if target is None:  # a pod without a process listening there: refused, as a dial is
            raise KubernetesError(
                status=503, reason="ServiceUnavailable", details={},
                message="error trying to reach service: dial tcp: connection refused",
            )  # fmt: skip
        if self._session is None:
            # Idle connections are dropped after 1 s, well before a pod's server closes them
            # (uvicorn: 5 s): reusing one the server is closing at that moment fails the request
            # with ServerDisconnectedError, a race no test is about.
            connector = aiohttp.TCPConnector(keepalive_timeout=1.0)
            self._session = aiohttp.ClientSession(connector=connector)
        url = f"http://127.0.0.1:{target}{api.subpath or '/'}"
        try:
            async with self._session.request(
                request.method.value, url, params=dict(request.params), data=request.body,
                headers=forwarded_headers(request.headers, request.url.raw_path),
                skip_auto_headers=("Content-Type",), timeout=aiohttp.ClientTimeout(total=60),
            ) as upstream:  # fmt: skip
                payload = await upstream.read()
                content_type = upstream.headers.get("Content-Type")
                return reply(payload, upstream.status, content_type or "application/octet-stream")
        except aiohttp.ClientConnectionError as exc:  # as k8s.io/apimachinery's proxy Transport
            raise KubernetesError(
                status=503, reason="ServiceUnavailable", details={},
                message=f"error trying to reach service: {exc!r}",
            ) from None  # fmt: skip


def unconditional_update(rt: ResourceType, name: str) -> KubernetesError:
    """A custom resource cannot be replaced without a resourceVersion (its strategy's
    `AllowUnconditionalUpdate` is false); the error names the resource, not the kind."""
    problem = "Invalid value: 0: must be specified for an update"
    return KubernetesError(
        status=422, reason="Invalid", message=f'{rt.group_resource} "{name}" is invalid: '
        f"metadata.resourceVersion: {problem}",
        details={"name": name, "group": rt.group, "kind": rt.plural, "causes": [
            {"reason": "FieldValueInvalid", "message": problem, "field": "metadata.resourceVersion"}]},
    )  # fmt: skip


def forwarded_headers(received: Mapping[str, str], path: str) -> dict[str, str]:
    """The headers a service proxy request reaches the pod with, as the real API server sends
    them (tests/real/test_proxy.py shows them): the caller's own, Host included (the API
    server's host:port), less NOT_FORWARDED; plus `X-Forwarded-For` (the emulator listens on
    127.0.0.1 only) and `X-Forwarded-Uri`, the path the caller asked for
    (k8s.io/apimachinery/pkg/util/proxy/transport.go)."""
    headers = {k: v for k, v in received.items() if k.lower() not in NOT_FORWARDED}
    before = next((v for k, v in received.items() if k.lower() == "x-forwarded-for"), None)
    headers = {k: v for k, v in headers.items() if k.lower() != "x-forwarded-for"}
    headers["X-Forwarded-For"] = f"{before}, 127.0.0.1" if before else "127.0.0.1"
    headers["X-Forwarded-Uri"] = path
    return headers
