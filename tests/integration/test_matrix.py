"""Features in combination: the rows of a pairwise feature matrix (matrix.py), each one full
rollout with the real operator against the Kubernetes API emulator, the real MLflow registry and
real `turnout-serve` pods:

    v1 serving -> the change to v2 (edit the version, move the alias or the stage) -> v2 switched
    and serving -> turnout.dev/rollback -> v1 serving again, Degraded/RolledBack

(docs/operations.md: after a rollback the ModelDeployment ends Degraded with reason RolledBack
while the spec or the registry still asks for the rolled-back version). At each stop the
predictions through the active Service come from the right version (v1 and v2 of the demo
Diabetes model answer differently; MLflow itself says what each answers), with the token when
auth is on and a 401 without it.

Each row has a registered model of its own (its alias or stage moves alone) and a ModelDeployment
of its own. The rows run at once, one thread each, in one cluster: a row's test waits for its
thread and reports what failed there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Registry, wait_until
from tests.integration import exposure
from tests.integration.cluster import (
    API,
    ROW,
    Cluster,
    calls_made,
    conditions,
    granted,
    history,
    running_cluster,
)
from tests.integration.matrix import Row, rows
from turnout_operator.domain.manifests import TOKEN_HEADER

pytestmark = [
    pytest.mark.slow,
    # the stage rows move legacy stages, which MLflow deprecates (still in wide use)
    pytest.mark.filterwarnings("ignore:.*transition_model_version_stage.*:FutureWarning"),
]

ROWS = rows()
STEP_SECONDS = 420.0  # one step of one row, with every row's pods starting at once on 2 cores
HOLD_SECONDS = 6.0  # a paused row stays put this long after seeing v2 (> one poll interval)
MAX_BODY = 65536  # the template override row's TURNOUT_MAX_BODY_BYTES
HEALTHY = {
    "Ready": ("True", "Available"),
    "Progressing": ("False", "RolloutComplete"),
    "ModelResolved": ("True", "Resolved"),
    "Degraded": ("False", "Healthy"),
}
UNAUTHORIZED = (
    "A valid bearer token is required (Authorization: Bearer <token>, or X-Turnout-Token: <token>)."
)


@pytest.fixture(scope="module")
def cluster(
    mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    yield from running_cluster(mlflow_registry, tmp_path_factory.mktemp("matrix"), pods="process")


@pytest.fixture(scope="module")
def expected(mlflow_registry: Registry) -> dict[str, list[float]]:
    """What v1 and v2 predict for ROW, by MLflow itself: what the active Service must answer."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_registry.uri)
    try:
        answers = {
            v: [float(p) for p in mlflow.pyfunc.load_model(f"models:/Diabetes/{v}").predict(pd.DataFrame([ROW]))]
            for v in ("1", "2")
        }  # fmt: skip
    finally:
        mlflow.set_tracking_uri(previous)
    assert answers["1"] != answers["2"]
    return answers


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, cluster: Cluster, expected: dict[str, list[float]]
) -> Iterator[dict[int, Future[None]]]:
    """Every selected row started at once; each test waits for its own."""
    selected = {item.name for item in request.session.items}
    chosen = [row for row in ROWS if f"test_a_full_rollout_and_rollback[{row.id}]" in selected]
    with ThreadPoolExecutor(max_workers=len(ROWS), thread_name_prefix="row") as pool:
        yield {row.index: pool.submit(Scenario(cluster, row, expected).run) for row in chosen}


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_a_full_rollout_and_rollback(row: Row, runs: dict[int, Future[None]]) -> None:
    """matrix.py's row, from v1 to v2 and back (the module's docstring)."""
    runs[row.index].result()


@pytest.mark.timeout(1800)
def test_every_call_of_the_matrix_is_granted_and_every_rule_is_used(
    cluster: Cluster, runs: dict[int, Future[None]]
) -> None:
    """With auth, smoke tests, credentials, scale-ups and rollbacks all used, the namespaced Role
    still allows exactly the calls the operator made: the token Secret needs nothing more than
    the `get` on secrets the credentials Secret already needed. Exposure, retraining and
    autoscaling are no factors of the matrix: their rules are the ones left unused here
    (test_operator.py uses them; without spec.autoscaling the operator only reads whether an
    autoscaler is there, and a color's disruption budget is made once and never changes)."""
    for future in runs.values():
        future.exception()  # wait; a row's own test reports its failure
    made = calls_made(cluster.kube)
    assert made - granted("namespaced") == set(), "calls the namespaced Role does not allow"
    retraining = {("batch", "jobs", "create"), ("batch", "jobs", "get")}
    autoscaling = {("autoscaling", "horizontalpodautoscalers", verb)
                   for verb in ("create", "update", "delete")}  # fmt: skip
    budgets = {("policy", "poddisruptionbudgets", "update")}
    unused = granted("namespaced") - made
    assert unused == exposure.RULES | retraining | autoscaling | budgets, (
        "rules of the namespaced Role nobody used"
    )


class Scenario:
    """One row, start to end, in its own thread."""

    def __init__(self, cluster: Cluster, row: Row, expected: dict[str, list[float]]) -> None:
        self.cluster, self.row, self.expected = cluster, row, expected
        self.name, self.model = f"matrix-{row.index}", f"Matrix{row.index}"
        self.replicas = 2 if row.partial_preview else 1
        self.token = f"token-of-row-{row.index}" if row.auth else None
        self.registry = MlflowClient(cluster.registry.uri)
        self.previewed = 0  # this test's own requests to the preview Service

    def run(self) -> None:
        try:
            self.deploy_v1()
            self.change_to_v2()
            self.promote_v2()
            self.roll_back()
        except AssertionError as exc:
            raise AssertionError(
                f"{self.row.id}: {exc}\nstatus: {self.cluster.status(self.name)}"
            ) from exc
        finally:
            self.cluster.kube.delete(API, "ModelDeployment", "default", self.name)  # frees its pods

    # --- the steps ------------------------------------------------------------------------------

    def deploy_v1(self) -> None:
        row, cluster = self.row, self.cluster
        versions = [str(self.registry.copy_model_version(f"models:/Diabetes/{v}", self.model).version)
                    for v in ("1", "2")]  # fmt: skip
        assert versions == ["1", "2"]
        self.point_registry_at("1")
        for secret, data in self.secrets().items():
            cluster.kube.create({"apiVersion": "v1", "kind": "Secret",
                                 "metadata": {"name": secret, "namespace": "default"}, "stringData": data})  # fmt: skip
        if row.overrides:
            cluster.kube.create({"apiVersion": "v1", "kind": "ServiceAccount",
                                 "metadata": {"name": f"{self.name}-sa", "namespace": "default"}})  # fmt: skip
        cluster.kube.create({"apiVersion": API, "kind": "ModelDeployment",
                             "metadata": {"name": self.name, "namespace": "default"}, "spec": self.spec()})  # fmt: skip
        status = self.wait("Healthy", activeVersion="1", activeColor="blue")
        assert conditions(status) == HEALTHY
        self.check_serving("1", "blue")
        self.check_pods("blue")

    def change_to_v2(self) -> None:
        cluster, name = self.cluster, self.name
        if self.row.paused:
            cluster.patch_spec(name, {"paused": True})
            status = self.wait("Paused", activeVersion="1")
            assert status["message"] == "spec.paused is true: rollouts are frozen"
        if self.row.model == "version":
            cluster.patch_spec(name, {"model": {"name": self.model, "version": "2"}})
        else:
            self.point_registry_at("2")
        if self.row.paused:
            self.hold_still()
            cluster.patch_spec(name, {"paused": False})

    def promote_v2(self) -> None:
        cluster, name, row = self.cluster, self.name, self.row
        if row.analysed:
            self.feed_the_analysis()
        if row.manual:
            status = self.wait("Paused", previewVersion="2", previewColor="green")
            assert conditions(status)["Progressing"] == ("True", "WaitingForPromotion")
            assert (cluster.selector(name), cluster.selector(f"{name}-preview")) == (
                "blue",
                "green",
            )
            assert (cluster.replicas(f"{name}-blue"), cluster.replicas(f"{name}-green")) == (self.replicas, 1)  # fmt: skip
            self.previewed += 1
            preview = self.predict(f"{name}-preview", self.token)
            assert preview.status_code == 200, preview.text
            assert preview.json()["predictions"] == self.expected["2"]
            cluster.annotate(name, "turnout.dev/promote")
        status = self.wait("Healthy", activeVersion="2", activeColor="green")
        assert conditions(status) == HEALTHY
        assert history(status)[:2] == [("2", "green", "Promoted"), ("1", "blue", "Promoted")]
        assert (cluster.selector(name), cluster.selector(f"{name}-preview")) == ("green", "green")
        assert cluster.replicas(f"{name}-blue") == self.replicas  # warm for the rollback
        self.check_serving("2", "green")
        self.check_pods("green")
        # what the rollout went through, from every state the API server stored: the preview's
        # replicas, then the switch's; the promotion gate the status showed
        green = cluster.kube.history("apps/v1", "Deployment", "default", f"{name}-green")
        assert _runs([state["spec"]["replicas"] for state in green]) == (
            [1, 2] if row.partial_preview else [1]
        )
        gates = {"WaitingForPromotion", "AutoPromotionPending"} & set(self.progress_reasons())
        # autoPromotionSeconds counts from the preview being ready, as in Argo Rollouts: an
        # analysis longer than it (5 s > 3 s) leaves nothing to wait for once it succeeds
        delayed = row.delay and not row.analysed
        expected = {"WaitingForPromotion"} if row.manual else {"AutoPromotionPending"} if delayed else set()  # fmt: skip
        assert gates == expected
        self.check_smoke_tests(2 if row.smoke else 0)
        kept = status.get("lastPrePromotionAnalysis")
        if row.analysed:
            assert kept is not None, status
            assert (kept["version"], kept["color"], kept["phase"]) == ("2", "green", "Successful")
        else:
            assert kept is None
        assert ("PrePromotionAnalysis" in self.progress_reasons()) is row.analysed

    def feed_the_analysis(self) -> None:
        """Once the pre-promotion analysis runs, predictions to the preview Service until it
        has a verdict: each measurement needs requests of both colors, and the emulator's pods
        have no cluster DNS to receive the active pods' mirrored copies by."""

        def verdict() -> bool:
            status = self.cluster.status(self.name)
            run = (status.get("rollout") or {}).get("prePromotionAnalysis")
            kept = status.get("lastPrePromotionAnalysis") or {}
            if kept.get("version") == "2" or (run and run["phase"] != "Running"):
                return True
            if run is not None:  # started after the smoke test: the preview is ready
                self.previewed += 1
                answer = self.predict(f"{self.name}-preview", self.token)
                assert answer.status_code == 200, answer.text
            return False

        wait_until(verdict, timeout=STEP_SECONDS, interval=0.5,
                   what=f"{self.name}'s pre-promotion verdict")  # fmt: skip

    def roll_back(self) -> None:
        cluster, name = self.cluster, self.name
        cluster.annotate(name, "turnout.dev/rollback")
        status = self.wait("Degraded", activeVersion="1", activeColor="blue")
        assert conditions(status)["Degraded"] == ("True", "RolledBack")
        assert conditions(status)["Ready"] == ("True", "Available")
        assert (
            status["message"] == "version 2 rolled back to 1 by the turnout.dev/rollback annotation"
        )
        assert (status["desiredVersion"], status["rejectedVersions"]) == ("2", ["2"])
        assert history(status)[:2] == [("1", "blue", "Promoted"), ("2", "green", "RolledBack")]
        assert (cluster.selector(name), cluster.selector(f"{name}-preview")) == ("blue", "blue")
        self.check_serving("1", "blue")
        cluster.wait_replicas(f"{name}-green", 0, timeout=STEP_SECONDS)
        status = cluster.status(name)  # the registry still names 2, the spec too: it stays so
        assert (status["phase"], status["activeVersion"]) == ("Degraded", "1")
        self.check_smoke_tests(2 if self.row.smoke else 0)  # a warm switch back: no smoke test

    # --- the row's spec and registry ------------------------------------------------------------

    def spec(self) -> dict[str, Any]:
        row = self.row
        reference = {"version": {"version": "1"}, "alias": {"alias": "champion"},
                     "stage": {"stage": "Production"}}[row.model]  # fmt: skip
        registry: dict[str, Any] = {"pollIntervalSeconds": 5}
        if row.credentials:
            registry["credentialsSecret"] = f"{self.name}-mlflow"
        spec: dict[str, Any] = {
            "model": {"name": self.model, **reference},
            "registry": registry,
            "replicas": self.replicas,
            "strategy": {"blueGreen": {
                "smokeTest": row.smoke, "previewReplicaCount": 1,
                "autoPromotionEnabled": not row.manual, "autoPromotionSeconds": 3 if row.delay else 0,
                "scaleDownDelaySeconds": 600, "abortScaleDownDelaySeconds": 1,
            }},
        }  # fmt: skip
        if row.auth:
            spec["auth"] = {"tokenSecret": f"{self.name}-tokens"}
        if row.overrides:
            spec["template"] = self.overrides()
        if row.drift_off:
            spec["monitoring"] = {"drift": {"enabled": False}}
        if row.analysed:
            spec["strategy"]["blueGreen"] |= {"shadow": {"percent": 100}, "analysis": {
                "prePromotion": {"intervalSeconds": 5, "count": 1, "minRequests": 1,
                                 "errorRatioMax": 0.5}}}  # fmt: skip
        return spec

    def overrides(self) -> dict[str, Any]:
        return {
            "env": [{"name": "TURNOUT_MAX_BODY_BYTES", "value": str(MAX_BODY)}],
            "resources": {
                "requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"memory": "1Gi"},
            },
            "serviceAccountName": f"{self.name}-sa",
        }

    def secrets(self) -> dict[str, dict[str, str]]:
        found = {}
        if self.row.auth:
            found[f"{self.name}-tokens"] = {"tokens": f"\n{self.token}\nanother-token\n"}
        if self.row.credentials:  # the test registry checks no token; the pods get it all the same
            found[f"{self.name}-mlflow"] = {
                "MLFLOW_TRACKING_TOKEN": f"mlflow-token-{self.row.index}"
            }
        return found

    def point_registry_at(self, version: str) -> None:
        """Move the row's alias or stage to `version` (a version row names its version itself)."""
        if self.row.model == "alias":
            self.registry.set_registered_model_alias(self.model, "champion", version)
        elif self.row.model == "stage":
            self.registry.transition_model_version_stage(self.model, version, "Production",
                                                         archive_existing_versions=True)  # fmt: skip

    # --- checks -----------------------------------------------------------------------------------

    def proxy(self, service: str) -> str:
        return f"{self.cluster.kube.url}/api/v1/namespaces/default/services/{service}:http/proxy"

    def predict(
        self, service: str, token: str | None, body: bytes | None = None, **headers: str
    ) -> httpx.Response:
        if token is not None:
            headers[TOKEN_HEADER] = token
        content = body or json.dumps({"dataframe_records": [ROW]}).encode()
        return httpx.post(f"{self.proxy(service)}/invocations", content=content, timeout=30,
                          headers={"Content-Type": "application/json", **headers})  # fmt: skip

    def check_serving(self, version: str, color: str) -> None:
        """The active Service answers with `version`'s predictions from `color`'s pods; with auth
        on, only with the token (and not in Authorization: the API server deletes it)."""
        answer = self.predict(self.name, self.token)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == self.expected[version]
        # the active Service's color serves `version`, with drift on or off as asked: its pod's
        # metrics (read from the pod, not through the proxy: the calls the RBAC test checks are
        # the operator's alone)
        assert self.cluster.selector(self.name) == color
        endpoint = self.cluster.kube.controller.endpoint("default", f"{self.name}-{color}")
        metrics = httpx.get(f"{endpoint}/metrics", timeout=30).text
        families = {family.name: family for family in text_string_to_metric_families(metrics)}
        served = [(s.labels["model"], s.labels["version"], s.labels["color"], s.value)
                  for s in families["turnout_model_info"].samples]  # fmt: skip
        assert served == [(self.model, version, color, 1.0)]
        reference = families.get("turnout_drift_reference_info")
        assert bool(reference and reference.samples) is not self.row.drift_off
        if self.token is not None:
            for refused in (self.predict(self.name, None), self.predict(self.name, "not-a-token"),
                            self.predict(self.name, None, Authorization=f"Bearer {self.token}")):  # fmt: skip
                assert (refused.status_code, refused.json()["message"]) == (401, UNAUTHORIZED)
        if self.row.overrides:  # the template's env reached the server
            body = b'{"dataframe_records": [' + b",".join([b'{"age": 0.0}'] * 6000) + b"]}"
            large = self.predict(self.name, self.token, body)
            assert (large.status_code, large.json()["message"]) == (
                413, f"The request body of {len(body)} bytes exceeds the {MAX_BODY}-byte limit.",
            )  # fmt: skip

    def check_pods(self, color: str) -> None:
        """What the row's spec puts in the pods of `color`, as written to its Deployment."""
        deployment = self.cluster.deployment(f"{self.name}-{color}")
        assert deployment is not None
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["TURNOUT_DRIFT_ENABLED"] == ("false" if self.row.drift_off else "true")
        assert env.get("TURNOUT_AUTH_TOKEN_FILE") == (
            "/etc/turnout/auth/tokens" if self.row.auth else None
        )
        assert container.get("envFrom") == (
            [{"secretRef": {"name": f"{self.name}-mlflow"}}] if self.row.credentials else None
        )
        if self.row.overrides:
            overrides = self.overrides()
            assert container["env"][-1] == overrides["env"][0]
            assert container["resources"] == overrides["resources"]
            assert pod["serviceAccountName"] == overrides["serviceAccountName"]
        else:
            # none asked for: the API server's default (an empty requirements object)
            assert container["resources"] == {} and "serviceAccountName" not in pod

    def check_smoke_tests(self, count: int) -> None:
        """The operator smoke-tested through the preview Service `count` times (first deploy and
        v2), and read the token Secret exactly when it smoke-tested, or asked the active pods to
        mirror to, a preview that needs one (mirrored copies carry the token)."""
        calls = list(self.cluster.kube.requests)
        smoke = [
            c for c in calls if c.subresource == "proxy" and c.name == f"{self.name}-preview:http"
        ]
        assert len(smoke) == count + self.previewed, smoke
        assert all(c.code == 200 for c in smoke), smoke
        mirror = [c for c in calls if (c.resource, c.subresource, c.method) == ("pods", "proxy", "PUT")
                  and (c.name or "").startswith(f"{self.name}-blue-")]  # fmt: skip
        starts, odd = divmod(len(mirror), self.replicas)  # one PUT per active pod each time
        assert (odd, starts > 0) == (0, self.row.analysed), mirror
        reads = [c for c in calls if c.resource == "secrets" and c.name == f"{self.name}-tokens"]
        assert len(reads) == (count + starts if self.row.auth else 0)

    def progress_reasons(self) -> list[str]:
        """The Progressing reason of every status the ModelDeployment had, oldest first."""
        states = self.cluster.kube.history(API, "ModelDeployment", "default", self.name)
        return [
            c["reason"]
            for s in states
            for c in (s.get("status") or {}).get("conditions", [])
            if c["type"] == "Progressing"
        ]

    def wait(self, phase: str, **fields: Any) -> dict[str, Any]:
        """The status once it is in `phase` with `fields`; fails at once on a Degraded status
        that was not asked for (a rejected version is not tried again by itself)."""

        def reached() -> dict[str, Any] | None:
            self.cluster.operator.alive()
            status = self.cluster.status(self.name)
            if phase != "Degraded":
                assert status.get("phase") != "Degraded", f"Degraded: {status.get('message')}"
            ok = status.get("phase") == phase and all(status.get(k) == v for k, v in fields.items())
            return status if ok else None

        return wait_until(
            reached, timeout=STEP_SECONDS, interval=0.2, what=f"{self.name} {phase} {fields}"
        )

    def hold_still(self) -> None:
        """Paused: the operator sees v2 (desiredVersion) and moves nothing, for HOLD_SECONDS more."""
        cluster, name = self.cluster, self.name
        seen: list[float] = []

        def still() -> bool:
            status = cluster.status(name)
            assert (status["phase"], status.get("activeVersion"), status.get("activeColor"),
                    status.get("previewVersion")) == ("Paused", "1", "blue", None), status  # fmt: skip
            assert cluster.deployment(f"{name}-green") is None, "a preview while paused"
            if not seen and status.get("desiredVersion") == "2":
                seen.append(time.monotonic())
            return bool(seen) and time.monotonic() - seen[0] >= HOLD_SECONDS

        wait_until(
            still, timeout=STEP_SECONDS, interval=0.2, what=f"{name} paused with version 2 desired"
        )


def _runs(values: list[int]) -> list[int]:
    """`values` with repeats in a row collapsed: [1, 1, 2, 2, 0] -> [1, 2, 0]."""
    return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]
