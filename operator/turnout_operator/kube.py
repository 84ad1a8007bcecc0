"""The operator's one Kubernetes adapter: read what the planner observes, carry out its actions.

Synchronous (the official client is); the kopf glue calls it from a worker thread, never on the
event loop. Writes are idempotent: a Deployment is patched only when its template hash, replicas
or labels differ; a Service's selector only when it differs, its exposure (type, port,
metadata) only when its record does; an Ingress or HTTPRoute is replaced when its record
differs. The client sends a dict patch as a JSON merge patch to custom resources (a real API
server answers a strategic-merge patch on them with 415) and as a strategic merge to built-in
kinds; a changed Deployment is replaced whole.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from turnout_operator.cache import Cache, Kind
from turnout_operator.domain.exposure import GATEWAY_GROUP, RECORD, ROUTE_APIS, managed_keys
from turnout_operator.domain.manifests import (
    COLOR_LABEL,
    HASH_ANNOTATION,
    NAME_LABEL,
    PORT,
    TOKEN_HEADER,
    TOKENS_KEY,
    VERSION_LABEL,
    admin_secret_name,
    deployment_name,
    first_token,
    labels,
    service_name,
    template_hash,
)
from turnout_operator.domain.observed import ColorState, ExposureSeen, SmokeResult
from turnout_operator.domain.retraining import JobState
from turnout_operator.domain.scaling_manifests import autoscaler_color, autoscaler_name
from turnout_operator.domain.spec import COLORS, GROUP, KIND, PLURAL, VERSION, Color
from turnout_operator.domain.status import RouteKind

log = logging.getLogger("turnout_operator.kube")

JOB_ENDS: dict[str, JobState] = {"Complete": "Succeeded", "Failed": "Failed"}
FAILING = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
           "InvalidImageName", "CreateContainerError", "RunContainerError")  # fmt: skip


class Rejected(Exception):
    """The API server refused an object the operator built (422 Invalid): what the domain's
    checks did not foresee, e.g. a resource quantity it cannot parse. Says which and why."""


class Stale(Exception):
    """A write the API server refused with 409 (Conflict, AlreadyExists): it was built from a
    read the watch had not brought up to date yet. The reconcile is tried again shortly, once
    the index has caught up."""


def _refused(kind: str, name: str, exc: ApiException) -> Rejected | Stale | ApiException:
    if exc.status == 409:
        return Stale(f"{kind} {name}: {exc.reason}")
    if exc.status != 422:
        return exc
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except ValueError:
        message = exc.body or exc.reason
    return Rejected(f"{kind} {name}: {message}")


def _json(response: Any) -> dict[str, Any]:
    """The JSON body of a raw (`_preload_content=False`) answer. Reads skip the client's typed
    models: building a V1Deployment and serializing it back to a dict cost more CPU than the
    rest of a reconcile."""
    body: dict[str, Any] = json.loads(response.data)
    return body


class Kube:
    """Reads come from `cache` (kopf's indexes and the operator's own writes, cache.py) once
    the operator has attached it; before that, and in tools that run no kopf, from the API."""

    def __init__(self, api: client.ApiClient, cache: Cache | None = None) -> None:
        self.api = api
        self.cache = cache or Cache()
        self._admin_secrets: set[tuple[str, str, str]] = set()  # (namespace, name, owner uid)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.policy = client.PolicyV1Api(api)

    # --- reading ------------------------------------------------------------------------------

    def model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.cache.attached:
            return self.cache.get("modeldeployments", namespace, name)
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def colors(self, namespace: str, name: str) -> dict[Color, ColorState]:
        found: dict[Color, ColorState] = {}
        for color in COLORS:
            deployment = self._read("deployments", self.apps.read_namespaced_deployment,
                                    namespace, deployment_name(name, color))  # fmt: skip
            if deployment is not None:
                found[color] = self._color_state(namespace, name, color, deployment)
        return found

    def _color_state(
        self, namespace: str, name: str, color: Color, deployment: dict[str, Any]
    ) -> ColorState:
        meta, spec, status = (
            deployment["metadata"],
            deployment["spec"],
            deployment.get("status") or {},
        )
        version = spec["template"]["metadata"]["labels"].get(VERSION_LABEL)
        replicas = int(spec.get("replicas", 1))
        # As `kubectl rollout status`: the spec observed, every pod of the new template, and no
        # old pod left (status.replicas counts them: a warm color given a new version keeps
        # its old pods available while the new ones start, maxUnavailable 0).
        updated = int(status.get("updatedReplicas", 0))
        rolled_out = (
            int(status.get("observedGeneration", 0)) >= int(meta.get("generation", 0))
            and updated == replicas
            and int(status.get("replicas", 0)) == updated
        )
        failure = None
        if replicas:
            wanted = {COLOR_LABEL: color, VERSION_LABEL: version}
            failure = _pod_failure(self._pods(namespace, name, wanted))
        return ColorState(
            version=version,
            replicas=replicas,
            rolled_out=rolled_out,
            available=int(status.get("availableReplicas", 0)),
            failure=failure,
        )

    def selectors(self, namespace: str, name: str) -> tuple[Color | None, Color | None]:
        found = []
        for role in ("active", "preview"):
            service = self._read("services", self.core.read_namespaced_service, namespace,
                                 service_name(name, role))  # fmt: skip
            selector = (service or {}).get("spec", {}).get("selector") or {}
            found.append(selector.get("turnout.dev/color"))
        return found[0], found[1]

    def secret(self, namespace: str, name: str) -> dict[str, str]:
        secret = self._get(self.core.read_namespaced_secret, namespace, name)
        if secret is None:
            raise LookupError(f"secret {namespace}/{name} not found")
        data = secret.get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def auth_token(self, namespace: str, name: str) -> str:
        """A token of the Secret `name` (its TOKENS_KEY, as the pods mount it) for the smoke
        test; LookupError, saying what is missing, when there is none."""
        tokens = self.secret(namespace, name).get(TOKENS_KEY)
        if tokens is None:
            raise LookupError(f"secret {namespace}/{name} has no {TOKENS_KEY!r} key")
        token = first_token(tokens)
        if token is None:
            raise LookupError(f"secret {namespace}/{name} holds no token in {TOKENS_KEY!r}")
        return token

    def ready_pods(self, namespace: str, name: str, color: Color) -> list[tuple[str, str]]:
        """(name, IP) of the ready pods of one color: those its Services send traffic to."""
        return sorted(
            (pod["metadata"]["name"], pod["status"]["podIP"])
            for pod in self._pods(namespace, name, {COLOR_LABEL: color})
            if (pod.get("status") or {}).get("podIP") and _ready(pod)
        )

    def _pods(
        self, namespace: str, name: str, wanted: dict[str, str | None]
    ) -> list[dict[str, Any]]:
        """The pods of ModelDeployment `name` that carry every label in `wanted`."""
        if self.cache.attached:
            return [
                pod for pod in self.cache.pods(namespace, name)
                if all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
            ]  # fmt: skip
        selector = ",".join(f"{k}={v}" for k, v in {NAME_LABEL: name, **wanted}.items())
        found = _json(self.core.list_namespaced_pod(namespace, label_selector=selector,
                                                    _preload_content=False))  # fmt: skip
        items: list[dict[str, Any]] = found.get("items", [])
        return items

    def pod_request(
        self, namespace: str, pod: str, ip: str, method: str, path: str, direct: bool,
        timeout: float, headers: dict[str, str] | None = None, body: Any = None,
    ) -> tuple[int, str]:  # fmt: skip
        """One HTTP request to a serving pod: to its IP when `direct` (in the cluster), else
        through the API server's pod proxy. The status code and the body's text."""
        headers = {"Accept": "*/*", **(headers or {})}
        if direct:
            answer = requests.request(
                method, f"http://{ip}:{PORT}{path}", json=body, headers=headers, timeout=timeout
            )
            return answer.status_code, answer.text
        proxied = f"/api/v1/namespaces/{namespace}/pods/{pod}:{PORT}/proxy{path}"
        try:
            response = self.api.call_api(
                proxied, method, body=body, header_params=headers,
                auth_settings=["BearerToken"], _preload_content=False, _request_timeout=timeout,
            )  # fmt: skip
        except ApiException as exc:
            text = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
            return int(exc.status or 0), str(text or exc.reason)
        raw = response[0] if isinstance(response, tuple) else response
        return int(raw.status), raw.data.decode(errors="replace")

    def job_state(self, namespace: str, name: str) -> tuple[JobState, str]:
        """How a retraining Job stands: Running until the Job controller sets its Complete or
        Failed condition (with why it failed), Missing once it is gone."""
        job = self._get(self.batch.read_namespaced_job, namespace, name)
        if job is None:
            return "Missing", ""
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition.get("status") == "True" and condition.get("type") in JOB_ENDS:
                why = ": ".join(filter(None, (condition.get("reason"), condition.get("message"))))
                return JOB_ENDS[condition["type"]], why
        return "Running", ""

    def ensure_admin_secret(self, namespace: str, name: str, owner: dict[str, Any]) -> None:
        """The Secret holding the admin token of the ModelDeployment's serving pods (mounted as
        their admin token file): created once with a random token, never changed. Once this
        process has seen it for this ModelDeployment (by uid) it does not look again: only the
        ModelDeployment's deletion removes it, by garbage collection."""
        secret_name = admin_secret_name(name)
        known = (namespace, secret_name, owner["metadata"].get("uid") or "")
        if known in self._admin_secrets:
            return
        if self._get(self.core.read_namespaced_secret, namespace, secret_name) is not None:
            self._admin_secrets.add(known)
            return
        body = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret_name, "namespace": namespace, "labels": labels(name)},
            "data": {TOKENS_KEY: base64.b64encode(new_admin_token().encode()).decode()},
        }  # fmt: skip
        try:
            self.core.create_namespaced_secret(namespace, _owned(body, owner))
        except ApiException as exc:
            if exc.status != 409:  # created meanwhile: the first token stands
                raise
        self._admin_secrets.add(known)

    def _read(self, kind: Kind, read: Any, namespace: str, name: str) -> dict[str, Any] | None:
        """One object of the operator's kinds: from the cache, or (not attached) the API."""
        if self.cache.attached:
            return self.cache.get(kind, namespace, name)
        return self._get(read, namespace, name)

    def _wrote(self, kind: Kind, response: Any) -> None:
        """Keep the API server's raw answer to a write until the index shows it."""
        self.cache.wrote(kind, _json(response))

    def _get(self, read: Any, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(read(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # --- writing ------------------------------------------------------------------------------

    def apply_deployment(
        self, body: dict[str, Any], owner: dict[str, Any], keep_replicas: bool = False
    ) -> None:
        """Create or update a Deployment; `keep_replicas`: an existing one keeps its count (an
        autoscaler owns it)."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        existing = self._read("deployments", self.apps.read_namespaced_deployment, namespace, name)
        body = _owned(body, owner)
        if keep_replicas and existing is not None:
            replicas = existing["spec"].get("replicas", body["spec"]["replicas"])
            body = {**body, "spec": {**body["spec"], "replicas": replicas}}
        try:
            self._write_deployment(namespace, name, existing, body)
        except ApiException as exc:
            raise _refused("Deployment", name, exc) from exc

    def _write_deployment(
        self, namespace: str, name: str, existing: dict[str, Any] | None, body: dict[str, Any]
    ) -> None:
        if existing is None:
            self._wrote("deployments", self.apps.create_namespaced_deployment(
                namespace, body, _preload_content=False))  # fmt: skip
            return
        same = (
            existing["metadata"].get("annotations", {}).get(HASH_ANNOTATION)
            == body["metadata"]["annotations"][HASH_ANNOTATION]
            and existing["spec"].get("replicas") == body["spec"]["replicas"]
        )
        if not same:
            # A full replace, not a patch: a strategic merge would keep env entries, volumes and
            # probes that the new template no longer has. The spec is ours whole (what we do
            # not set, the API server defaults again as at creation) and annotations others set
            # (the controller's revision) stay. No resourceVersion: Deployments take an
            # unconditional update, and the controller's status writes, which a watch shows a
            # moment late, would otherwise fail most replaces made from the index.
            replacement = {
                **body,
                "metadata": {
                    **body["metadata"],
                    "annotations": {**(existing["metadata"].get("annotations") or {}),
                                    **body["metadata"]["annotations"]},
                },
            }  # fmt: skip
            self._wrote("deployments", self.apps.replace_namespaced_deployment(
                name, namespace, replacement, _preload_content=False))  # fmt: skip

    def create_job(self, body: dict[str, Any], owner: dict[str, Any]) -> None:
        """Create a retraining Job owned by the ModelDeployment (so it goes with it). One that
        exists is the same Job: an earlier reconcile created it and lost its status write."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            self.batch.create_namespaced_job(namespace, _owned(body, owner))
        except ApiException as exc:
            if exc.status != 409:
                raise _refused("Job", name, exc) from exc

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        try:
            patch = {"spec": {"replicas": replicas}}
            self._wrote("deployments", self.apps.patch_namespaced_deployment(
                name, namespace, patch, _preload_content=False))  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:
                raise

    def point_service(self, body: dict[str, Any], owner: dict[str, Any]) -> None:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        existing = self._read("services", self.core.read_namespaced_service, namespace, name)
        try:
            if existing is None:
                self._wrote("services", self.core.create_namespaced_service(
                    namespace, _owned(body, owner), _preload_content=False))  # fmt: skip
            elif existing["spec"].get("selector") != body["spec"]["selector"]:
                patch = {"spec": {"selector": body["spec"]["selector"]}}
                self._wrote("services", self.core.patch_namespaced_service(
                    name, namespace, patch, _preload_content=False))  # fmt: skip
        except ApiException as exc:
            raise _refused("Service", name, exc) from exc

    # --- scaling: the autoscaler and the disruption budgets (domain/scaling_manifests.py) ------

    def autoscaler(self, namespace: str, name: str) -> Color | None:
        """The color the ModelDeployment's HorizontalPodAutoscaler targets; None: it has none."""
        hpa = self._read("horizontalpodautoscalers",
                         self.autoscaling.read_namespaced_horizontal_pod_autoscaler, namespace,
                         autoscaler_name(name))  # fmt: skip
        return None if hpa is None else autoscaler_color(hpa)

    def apply_autoscaler(self, body: dict[str, Any], owner: dict[str, Any]) -> None:
        hpa = self.autoscaling
        self._apply_hashed("horizontalpodautoscalers", body, owner,
                           hpa.read_namespaced_horizontal_pod_autoscaler,
                           hpa.create_namespaced_horizontal_pod_autoscaler,
                           hpa.replace_namespaced_horizontal_pod_autoscaler)  # fmt: skip

    def delete_autoscaler(self, namespace: str, name: str) -> None:
        try:
            self.autoscaling.delete_namespaced_horizontal_pod_autoscaler(
                autoscaler_name(name), namespace
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
        self.cache.deleted("horizontalpodautoscalers", namespace, autoscaler_name(name))

    def apply_disruption_budget(self, body: dict[str, Any], owner: dict[str, Any]) -> None:
        self._apply_hashed("poddisruptionbudgets", body, owner,
                           self.policy.read_namespaced_pod_disruption_budget,
                           self.policy.create_namespaced_pod_disruption_budget,
                           self.policy.replace_namespaced_pod_disruption_budget)  # fmt: skip

    def _apply_hashed(
        self, kind: Kind, body: dict[str, Any], owner: dict[str, Any], read: Any, create: Any,
        replace: Any,
    ) -> None:  # fmt: skip
        """Create, or replace when the spec we built changed (a hash of it in an annotation:
        the API server defaults and canonicalises fields, so a comparison would never agree)."""
        meta = body["metadata"]
        namespace, name, what = meta["namespace"], meta["name"], body["kind"]
        digest = template_hash(body["spec"])
        body = _owned({**body, "metadata": {**meta, "annotations": {HASH_ANNOTATION: digest}}},
                      owner)  # fmt: skip
        existing = self._read(kind, read, namespace, name)
        try:
            if existing is None:
                self._wrote(kind, create(namespace, body, _preload_content=False))
            elif (existing["metadata"].get("annotations") or {}).get(HASH_ANNOTATION) != digest:
                version = existing["metadata"]["resourceVersion"]
                body["metadata"]["resourceVersion"] = version
                self._wrote(kind, replace(name, namespace, body, _preload_content=False))
        except ApiException as exc:
            raise _refused(what, name, exc) from exc

    # --- exposure (domain/exposure.py) ---------------------------------------------------------

    def exposure(self, namespace: str, name: str, ingress: bool, http_route: bool) -> ExposureSeen:
        """The active Service's exposure record and load balancer address; the Ingress and the
        HTTPRoute only when asked (the spec wants one, or the status says one was made)."""
        service = self._read("services", self.core.read_namespaced_service, namespace,
                             service_name(name, "active"))  # fmt: skip
        seen = ExposureSeen()
        if service is not None:
            seen = replace(seen, service=_record(service) or "", load_balancer=_address(service))
        if ingress:
            found = self._route("Ingress", namespace, name)
            if found is not None:
                seen = replace(seen, ingress=_record(found) or "", ingress_address=_address(found))
        if http_route:
            if not self._serves_http_routes():
                return replace(seen, gateway_api=False)
            found = self._route("HTTPRoute", namespace, name)
            seen = replace(seen, http_route=None if found is None else _record(found) or "")
        return seen

    def _route(self, kind: RouteKind, namespace: str, name: str) -> dict[str, Any] | None:
        group, version, plural = ROUTE_APIS[kind]
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                group, version, namespace, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def _serves_http_routes(self) -> bool:
        """Whether the API server serves gateway.networking.k8s.io/v1 httproutes (discovery,
        which every authenticated client may read)."""
        try:
            response = self.api.call_api(
                f"/apis/{GATEWAY_GROUP}/v1", "GET", auth_settings=["BearerToken"],
                _preload_content=False, response_type="object",
            )  # fmt: skip
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        raw = response[0] if isinstance(response, tuple) else response
        resources = json.loads(raw.data).get("resources") or []
        return any(r.get("name") == "httproutes" for r in resources)

    def expose_service(self, body: dict[str, Any]) -> None:
        """Bring an existing active Service's type, port, labels and annotations to `body`
        (domain/exposure.expose_service), keeping its selector and the keys others set; a
        node port already allocated stays. A missing Service is PointService's to create."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        existing = self._read("services", self.core.read_namespaced_service, namespace, name)
        if existing is None:
            return
        old_annotations, old_labels = managed_keys(_record(existing))
        meta = body["metadata"]
        annotations: dict[str, str | None] = dict.fromkeys(
            old_annotations - set(meta["annotations"])
        )
        labels_: dict[str, str | None] = dict.fromkeys(old_labels - set(meta["labels"]))
        node_ports = {p.get("name"): p.get("nodePort") for p in existing["spec"].get("ports", [])}
        ports: list[dict[str, Any]] = [{"$patch": "replace"}]
        for port in body["spec"]["ports"]:
            kept = node_ports.get(port["name"])
            keep = body["spec"]["type"] != "ClusterIP" and kept
            ports.append({**port, "nodePort": kept} if keep else port)
        patch = {
            "metadata": {"annotations": {**annotations, **meta["annotations"]},
                         "labels": {**labels_, **meta["labels"]}},
            "spec": {"type": body["spec"]["type"], "ports": ports},
        }  # fmt: skip
        try:
            self._wrote("services", self.core.patch_namespaced_service(
                name, namespace, patch, _preload_content=False))  # fmt: skip
        except ApiException as exc:
            raise _refused("Service", name, exc) from exc

    def apply_route(self, body: dict[str, Any], owner: dict[str, Any]) -> None:
        """Create the Ingress or HTTPRoute `body`, or replace the one there when its record
        differs (a replace, so rules the spec dropped go)."""
        kind, meta = body["kind"], body["metadata"]
        group, version, plural = ROUTE_APIS[kind]
        namespace, name = meta["namespace"], meta["name"]
        existing = self._route(kind, namespace, name)
        try:
            if existing is None:
                self.custom.create_namespaced_custom_object(
                    group, version, namespace, plural, _owned(body, owner)
                )
            elif _record(existing) != meta["annotations"][RECORD]:
                replacement = _owned(body, owner)
                replacement["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                self.custom.replace_namespaced_custom_object(
                    group, version, namespace, plural, name, replacement
                )
        except ApiException as exc:
            raise _refused(kind, name, exc) from exc

    def delete_route(self, kind: RouteKind, namespace: str, name: str) -> None:
        group, version, plural = ROUTE_APIS[kind]
        try:
            self.custom.delete_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def remove_annotation(self, namespace: str, name: str, key: str) -> None:
        self.cache.wrote("modeldeployments", self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"annotations": {key: None}}}
        ))  # fmt: skip

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.cache.wrote("modeldeployments", self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        ))  # fmt: skip

    def event(self, owner: dict[str, Any], type_: str, reason: str, message: str) -> None:
        now = datetime.now(UTC)
        meta = owner["metadata"]
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": owner["apiVersion"],
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "turnout-operator"},
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
            "reportingComponent": "turnout.dev/operator",
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException:
            log.warning("could not post event %s on %s/%s", reason, meta["namespace"], meta["name"])

    # --- smoke test ---------------------------------------------------------------------------

    def smoke(
        self, namespace: str, service: str, version: str, payload: bytes, direct: bool,
        timeout: float, token: str | None = None,
    ) -> SmokeResult:  # fmt: skip
        """POST the input example to `service` (cluster DNS when `direct`, else through the API
        server's service proxy) and check the answer is a 200 with predictions.

        A `token` goes in `TOKEN_HEADER` on both paths: the proxy deletes `Authorization`
        (k8s.io/apiserver/pkg/endpoints/filters/authentication.go), and one header on both
        keeps the in-cluster request the same as the one tested through a real API server."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers[TOKEN_HEADER] = token
        try:
            if direct:
                answer = requests.post(
                    f"http://{service}.{namespace}.svc/invocations", data=payload,
                    headers=headers, timeout=timeout,
                )  # fmt: skip
                code, text = answer.status_code, answer.text
            else:
                code, text = self._proxy_post(namespace, service, payload, headers, timeout)
        except (requests.RequestException, OSError) as exc:
            return SmokeResult(version, False, f"smoke test could not reach {service}: {exc}")
        return _judge(version, code, text)

    def _proxy_post(
        self, namespace: str, service: str, payload: bytes, headers: dict[str, str],
        timeout: float,
    ) -> tuple[int, str]:  # fmt: skip
        path = f"/api/v1/namespaces/{namespace}/services/{service}:http/proxy/invocations"
        try:
            response = self.api.call_api(
                path, "POST", body=json.loads(payload),
                header_params={**headers, "Accept": "application/json"},
                auth_settings=["BearerToken"], _preload_content=False, _request_timeout=timeout,
            )  # fmt: skip
        except ApiException as exc:  # the body of an unread answer comes as bytes
            body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body
            return int(exc.status or 0), str(body or exc.reason)
        raw = response[0] if isinstance(response, tuple) else response
        return int(raw.status), raw.data.decode(errors="replace")


def _judge(version: str, code: int, text: str) -> SmokeResult:
    if code != 200:
        return SmokeResult(version, False, f"smoke test got HTTP {code}: {text[:300]}")
    try:
        predictions = json.loads(text).get("predictions")
    except (ValueError, AttributeError):
        return SmokeResult(version, False, f"smoke test got a body that is not JSON: {text[:200]}")
    if predictions is None or (hasattr(predictions, "__len__") and len(predictions) == 0):
        return SmokeResult(version, False, f"smoke test got no predictions: {text[:200]}")
    return SmokeResult(version, True, "input example answered with predictions")


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def new_admin_token() -> str:
    return secrets.token_urlsafe(32)


def _pod_failure(pods: list[dict[str, Any]]) -> str | None:
    """The first failing container's waiting reason, with why it last ended when the container
    said so (its termination message: turnout-serve writes there, e.g. the package the model
    needs that the image lacks), as `CrashLoopBackOff: <message>`."""
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            reason = ((status.get("state") or {}).get("waiting") or {}).get("reason")
            if reason in FAILING:
                said = _termination_message(status)
                return f"{reason}: {said}" if said else str(reason)
    return None


TERMINATION_MESSAGE_CHARS = 512


def _termination_message(status: dict[str, Any]) -> str:
    """The last line of the message the container's last run ended with (a log tail's last line
    under FallbackToLogsOnError), cut to TERMINATION_MESSAGE_CHARS."""
    ended = (status.get("lastState") or {}).get("terminated") or {}
    lines = [line.strip() for line in str(ended.get("message") or "").splitlines()]
    said = next((line for line in reversed(lines) if line), "")
    return said[:TERMINATION_MESSAGE_CHARS]


def _record(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(RECORD)


def _address(obj: dict[str, Any]) -> str | None:
    """The first load balancer IP or hostname in a Service's or an Ingress' status."""
    for entry in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if entry.get("ip") or entry.get("hostname"):
            return str(entry.get("ip") or entry.get("hostname"))
    return None


def _owned(body: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    meta = owner["metadata"]
    reference = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}  # fmt: skip
    return {**body, "metadata": {**body["metadata"], "ownerReferences": [reference]}}
