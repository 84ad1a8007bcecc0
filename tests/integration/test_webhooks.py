"""Registry webhooks end to end: a real MLflow tracking server delivers its own signed webhooks over
HTTPS to the real operator (against the Kubernetes API emulator), which makes the
ModelDeployments serving that model ask the registry at once. Every ModelDeployment here polls
once an hour, so nothing but a delivery can start a rollout during a test.

The MLflow server trusts the test CA the way the chart's bundled MLflow does: the chart's
sitecustomize.py on its PYTHONPATH, TURNOUT_WEBHOOK_CA_FILE naming the CA (MLflow's delivery
session ignores REQUESTS_CA_BUNDLE), and MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS (127.0.0.1 is not a
public address).
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.webhooks.delivery import _generate_hmac_signature

from tests.conftest import ROOT, Registry, free_port, start_mlflow, wait_until
from tests.integration.cluster import Cluster, conditions, running_cluster
from tests.integration.counting_proxy import CountingProxy, counting_proxy
from tests.real.pki import _Authority, _write

pytestmark = pytest.mark.slow

SECRET = "a-webhook-secret-shared-with-mlflow"
HOUR = {"pollIntervalSeconds": 3600}
STRATEGY = {"blueGreen": {"smokeTest": False, "scaleDownDelaySeconds": 1}}
EVENTS = ["model_version.created", "model_version_alias.created", "model_version_alias.deleted"]
DELIVERIES = "turnout_operator_webhook_deliveries_total"
# What the chart's bundled MLflow runs as sitecustomize.py when webhooks are on
SITECUSTOMIZE = ROOT / "charts" / "turnout" / "files" / "mlflow" / "sitecustomize.py.txt"


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path
    secret: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A CA, the endpoint's certificate for 127.0.0.1 signed by it, and the HMAC secret, as the
    operator's two Secrets would mount them."""
    home = tmp_path_factory.mktemp("webhook-tls")
    ca = _Authority("turnout-webhook-test-ca")
    ca_pair = _write(home, "ca", ca.cert, ca.key)
    serving = _write(home, "tls", *ca.sign("turnout-operator", serving=True, ips=("127.0.0.1",)))
    secret = home / "secret"
    secret.write_text(SECRET + "\n")  # as `kubectl create secret --from-file` keeps a newline
    return Tls(ca_pair.cert, serving.cert, serving.key, secret)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, tls: Tls) -> Iterator[Registry]:
    """An MLflow server of its own (its webhooks reach only this module's operator). It reads
    its webhooks afresh for every event, so one a test disables stops at once."""
    home = tmp_path_factory.mktemp("mlflow-webhooks")
    (home / "site").mkdir()
    (home / "site" / "sitecustomize.py").write_bytes(SITECUSTOMIZE.read_bytes())
    server = start_mlflow(home, {
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_CACHE_TTL": "0",
        "PYTHONPATH": str(home / "site"),
        "TURNOUT_WEBHOOK_CA_FILE": str(tls.ca),
    })  # fmt: skip
    try:
        yield Registry(server.url, {}, {"MLFLOW_TRACKING_URI": server.url})
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(
    registry: Registry, tls: Tls, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    yield from running_cluster(
        registry, tmp_path_factory.mktemp("webhooks"), pods="available",
        extra_env={
            "TURNOUT_OPERATOR_WEBHOOK_PORT": str(free_port()),
            "TURNOUT_OPERATOR_WEBHOOK_ADDRESS": "127.0.0.1",
            "TURNOUT_OPERATOR_WEBHOOK_CERT_FILE": str(tls.cert),
            "TURNOUT_OPERATOR_WEBHOOK_KEY_FILE": str(tls.key),
            "TURNOUT_OPERATOR_WEBHOOK_SECRET_FILE": str(tls.secret),
        },
    )  # fmt: skip


@pytest.fixture(scope="module")
def proxy(registry: Registry) -> Iterator[CountingProxy]:
    """The module's MLflow behind a counting proxy, for ModelDeployments that name it."""
    with counting_proxy(registry.uri) as proxy:
        yield proxy


def endpoint(cluster: Cluster) -> str:
    return f"https://127.0.0.1:{cluster.env['TURNOUT_OPERATOR_WEBHOOK_PORT']}/webhooks/mlflow"


@pytest.fixture(scope="module")
def client(registry: Registry, cluster: Cluster, tls: Tls) -> MlflowClient:
    """The registry's client, with the operator's endpoint registered as MLflow's docs say
    (once the endpoint answers)."""
    wait_until(lambda: httpx.post(endpoint(cluster), verify=tls.context()).status_code == 400,
               timeout=60, interval=0.2, what="the operator's webhook endpoint")  # fmt: skip
    client = MlflowClient(registry.uri)
    client.create_webhook(name="turnout", url=endpoint(cluster), events=EVENTS, secret=SECRET)
    return client


@pytest.fixture(autouse=True)
def clean_up(cluster: Cluster) -> Iterator[None]:
    yield
    cluster.delete_model_deployments()


def registered(client: MlflowClient, name: str, versions: int) -> list[str]:
    """`versions` versions of a new registered model (pods here are stand-ins: no artifacts)."""
    client.create_registered_model(name)
    run = client.create_run("0").info
    return [
        str(client.create_model_version(name, f"{run.artifact_uri}/model{i}", run.run_id).version)
        for i in range(versions)
    ]


def healthy_on_champion(cluster: Cluster, client: MlflowClient, name: str, model: str,
                        version: str) -> dict[str, Any]:  # fmt: skip
    client.set_registered_model_alias(model, "champion", version)
    cluster.apply(name, {"name": model, "alias": "champion"}, registry=HOUR, strategy=STRATEGY)
    return cluster.wait_phase(name, "Healthy", activeVersion=version, activeColor="blue")


def delivery(tls: Tls, cluster: Cluster, body: bytes, *, secret: str = SECRET,
             delivery_id: str | None = None, sent: float | None = None,
             signed: bool = True) -> httpx.Response:  # fmt: skip
    """A delivery as MLflow sends one (headers and signature from its own code), or not quite."""
    delivery_id = delivery_id or str(uuid.uuid4())
    timestamp = str(int(time.time() if sent is None else sent))
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": timestamp,
    }
    if signed:
        headers["X-MLflow-Signature"] = _generate_hmac_signature(
            secret, delivery_id, timestamp, body.decode()
        )
    return httpx.post(endpoint(cluster), content=body, headers=headers, verify=tls.context())


def alias_event(model: str, version: str) -> bytes:
    return json.dumps({"entity": "model_version_alias", "action": "created",
                       "timestamp": "2026-01-01T00:00:00+00:00",
                       "data": {"name": model, "alias": "champion", "version": version}}).encode()  # fmt: skip


def counts(cluster: Cluster) -> dict[str, float]:
    return {result: cluster.metric(f'{DELIVERIES}{{result="{result}"}}')
            for result in ("accepted", "ignored", "bad_signature", "stale", "replayed",
                           "missing_header", "malformed", "too_large")}  # fmt: skip


def wait_accepted(cluster: Cluster, count: float) -> None:
    """MLflow delivers in the background: wait until `count` deliveries were let in."""
    wait_until(lambda: counts(cluster)["accepted"] == count, timeout=30, interval=0.1,
               what=f"{count:g} deliveries accepted, not {counts(cluster)['accepted']:g}")  # fmt: skip


def unchanged(cluster: Cluster, name: str, key: str, value: Any, seconds: float = 2.0) -> None:
    """`status[key]` stays `value` for `seconds` (bounded): what "nothing happened" looks like."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert cluster.status(name).get(key) == value
        time.sleep(0.1)


# --- MLflow's own deliveries ----------------------------------------------------------------------


def test_an_alias_moved_in_mlflow_starts_the_rollout_without_waiting_for_the_poll(
    cluster: Cluster, client: MlflowClient
) -> None:
    base = counts(cluster)["accepted"]
    v1, v2 = registered(client, "Webhooked", 2)
    healthy_on_champion(cluster, client, "webhooked", "Webhooked", v1)
    wait_accepted(cluster, base + 3)  # two versions created, the alias set
    before = counts(cluster)

    client.set_registered_model_alias("Webhooked", "champion", v2)
    # the poll is an hour away; pods here are ready at once, so the rollout itself can come and
    # go between two reads: what stays is the switch to the preview color and the history
    status = cluster.wait_phase("webhooked", "Healthy", timeout=30, activeVersion=v2,
                                activeColor="green")  # fmt: skip
    assert status["desiredVersion"] == v2
    assert [entry["version"] for entry in status["history"]][:2] == [v2, v1]
    assert conditions(status)["ModelResolved"] == ("True", "Resolved")
    after = counts(cluster)
    assert after["accepted"] - before["accepted"] == 1
    assert {k: after[k] - before[k] for k in after if k != "accepted"} == dict.fromkeys(
        [k for k in after if k != "accepted"], 0.0
    )


def test_an_alias_deleted_in_mlflow_is_reported_at_once(
    cluster: Cluster, client: MlflowClient
) -> None:
    base = counts(cluster)["accepted"]
    (v1,) = registered(client, "Unaliased", 1)
    healthy_on_champion(cluster, client, "unaliased", "Unaliased", v1)
    wait_accepted(cluster, base + 2)

    client.delete_registered_model_alias("Unaliased", "champion")
    status = wait_until(
        lambda: (s := cluster.status("unaliased")) and conditions(s)["ModelResolved"][0] == "False"
        and s, timeout=30, interval=0.1, what="ModelResolved False",
    )  # fmt: skip
    assert conditions(status)["ModelResolved"] == ("False", "ModelNotFound")
    assert (status["phase"], status["activeVersion"]) == ("Healthy", v1)  # keeps serving


def test_one_delivery_for_eight_followers_asks_the_registry_once(
    cluster: Cluster, client: MlflowClient, proxy: CountingProxy
) -> None:
    base = counts(cluster)["accepted"]
    v1, v2 = registered(client, "Fanned", 2)
    client.set_registered_model_alias("Fanned", "champion", v1)
    wait_accepted(cluster, base + 3)
    names = [f"fanned-{i}" for i in range(8)]
    for name in names:
        cluster.apply(name, {"name": "Fanned", "alias": "champion"}, strategy=STRATEGY,
                      registry={**HOUR, "trackingUri": proxy.url})  # fmt: skip
    for name in names:
        cluster.wait_phase(name, "Healthy", activeVersion=v1, activeColor="blue")
    lookups = proxy.alias_lookups("Fanned")
    resolved, shared = (cluster.metric('turnout_operator_registry_resolutions_total'
                                       '{result="Resolved"}'),
                        cluster.metric("turnout_operator_registry_answers_shared_total"))  # fmt: skip

    client.set_registered_model_alias("Fanned", "champion", v2)
    for name in names:
        cluster.wait_phase(name, "Healthy", timeout=30, activeVersion=v2, activeColor="green")
    assert proxy.alias_lookups("Fanned") - lookups == 1  # MLflow was asked once, for all eight
    assert cluster.metric('turnout_operator_registry_resolutions_total{result="Resolved"}') == (
        resolved + 1
    )
    assert cluster.metric("turnout_operator_registry_answers_shared_total") == shared + 7


# --- deliveries the endpoint refuses -------------------------------------------------------------


def test_forged_stale_and_replayed_deliveries_are_refused_and_change_nothing(
    cluster: Cluster, client: MlflowClient, tls: Tls
) -> None:
    base = counts(cluster)["accepted"]
    v1, v2 = registered(client, "Guarded", 2)
    client.set_registered_model_alias("Guarded", "champion", v1)
    wait_accepted(cluster, base + 3)
    # a delivery let in before the ModelDeployment exists, to replay once it does
    accepted = delivery(tls, cluster, alias_event("Guarded", v1))
    assert (accepted.status_code, accepted.json()) == (200, {
        "result": "accepted", "model": "Guarded", "modelDeployments": [],
    })  # fmt: skip
    cluster.apply("guarded", {"name": "Guarded", "alias": "champion"}, registry=HOUR,
                  strategy=STRATEGY)  # fmt: skip
    cluster.wait_phase("guarded", "Healthy", activeVersion=v1, activeColor="blue")
    [hook] = [h for h in client.list_webhooks() if h.name == "turnout"]
    client.update_webhook(hook.webhook_id, status="DISABLED")
    try:
        client.set_registered_model_alias("Guarded", "champion", v2)  # MLflow tells no one
        refused_deliveries(cluster, tls, accepted, v1, v2)
    finally:
        client.update_webhook(hook.webhook_id, status="ACTIVE")


def refused_deliveries(
    cluster: Cluster, tls: Tls, accepted: httpx.Response, v1: str, v2: str
) -> None:
    before = counts(cluster)

    body = alias_event("Guarded", v2)
    refusals = [
        delivery(tls, cluster, body, secret="not-the-secret"),
        delivery(tls, cluster, body, sent=time.time() - 600),
        delivery(tls, cluster, accepted.request.content,
                 delivery_id=accepted.request.headers["X-MLflow-Delivery-Id"],
                 sent=float(accepted.request.headers["X-MLflow-Timestamp"])),
        delivery(tls, cluster, body, signed=False),
    ]  # fmt: skip
    delivery_id = accepted.request.headers["X-MLflow-Delivery-Id"]
    assert [(r.status_code, r.json()) for r in refusals] == [
        (401, {"result": "bad_signature", "message": "X-MLflow-Signature does not match the body"}),
        (401, {"result": "stale",
               "message": "X-MLflow-Timestamp is more than 300 s from the current time"}),
        (409, {"result": "replayed", "message": f"delivery {delivery_id} was already received"}),
        (400, {"result": "missing_header", "message": "missing header X-MLflow-Signature"}),
    ]  # fmt: skip
    unchanged(cluster, "guarded", "desiredVersion", v1)
    assert cluster.deployment("guarded-green") is None
    after = counts(cluster)
    assert {k: after[k] - before[k] for k in after} == {
        "accepted": 0, "ignored": 0, "bad_signature": 1, "stale": 1, "replayed": 1,
        "missing_header": 1, "malformed": 0, "too_large": 0,
    }  # fmt: skip

    # the same event, signed as MLflow signs it: now the registry is asked
    assert delivery(tls, cluster, body).status_code == 200
    status = cluster.wait_phase("guarded", "Healthy", timeout=30, activeVersion=v2,
                                activeColor="green")  # fmt: skip
    assert status["desiredVersion"] == v2
