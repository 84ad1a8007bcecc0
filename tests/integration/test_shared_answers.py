"""Registry answers shared by the ModelDeployments that follow one alias, counted from MLflow's
side: the real operator (against the Kubernetes API emulator) resolves through a counting proxy
in front of a real MLflow tracking server, and the alias lookups MLflow answers over a fixed
window are the same with one follower as with eight, while every follower still resolves once
per poll interval."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from mlflow import MlflowClient

from tests.conftest import Registry, start_mlflow, wait_until
from tests.integration.cluster import Cluster, running_cluster
from tests.integration.counting_proxy import CountingProxy, counting_proxy

pytestmark = pytest.mark.slow

MODEL = "Followed"
POLL_SECONDS = 5  # the shortest poll interval the CRD allows
WINDOW_SECONDS = 15.0
STRATEGY = {"blueGreen": {"smokeTest": False, "scaleDownDelaySeconds": 1}}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CountingProxy]:
    """MLflow with `Followed` version 1 under alias champion, behind the counting proxy."""
    home = tmp_path_factory.mktemp("mlflow-shared")
    server = start_mlflow(home)
    try:
        client = MlflowClient(server.url)
        client.create_registered_model(MODEL)
        run = client.create_run("0").info
        version = client.create_model_version(MODEL, f"{run.artifact_uri}/model", run.run_id)
        client.set_registered_model_alias(MODEL, "champion", version.version)
        with counting_proxy(server.url) as proxy:
            yield proxy
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(proxy: CountingProxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from running_cluster(Registry(proxy.url, {}), tmp_path_factory.mktemp("shared"),
                               pods="available")  # fmt: skip


def watch_window(cluster: Cluster, seconds: float) -> None:
    """Let `seconds` pass, checking the operator stays up (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert cluster.operator.alive()
        time.sleep(0.5)


@pytest.mark.parametrize("followers", [1, 8])
def test_alias_lookups_do_not_grow_with_the_followers(
    cluster: Cluster, proxy: CountingProxy, followers: int
) -> None:
    names = [f"follower-{followers}-{i}" for i in range(followers)]
    for name in names:
        cluster.apply(name, {"name": MODEL, "alias": "champion"},
                      registry={"pollIntervalSeconds": POLL_SECONDS}, strategy=STRATEGY)  # fmt: skip
    for name in names:
        cluster.wait_phase(name, "Healthy", activeVersion="1")
    try:
        started = datetime.now(UTC).replace(microsecond=0)
        before = proxy.alias_lookups(MODEL)
        watch_window(cluster, WINDOW_SECONDS)
        lookups = proxy.alias_lookups(MODEL) - before
        resolved = [datetime.fromisoformat(cluster.status(n)["resolvedAt"]) for n in names]
    finally:
        cluster.delete_model_deployments()
        wait_until(lambda: all(cluster.kube.get("turnout.dev/v1alpha1", "ModelDeployment",
                                                "default", n) is None for n in names),
                   timeout=60, what="the followers deleted")  # fmt: skip
    print(f"{followers} follower(s): {lookups} alias lookups in {WINDOW_SECONDS:g} s")
    # every follower resolved again during the window (its poll came) ...
    assert all(at >= started for at in resolved), (started, resolved)
    # ... and MLflow was asked once per poll interval, twice at most (an answer is shared for
    # half an interval), whatever the number of followers (unshared, eight were measured asking
    # 12 times)
    per_interval = WINDOW_SECONDS / POLL_SECONDS
    assert per_interval - 1 <= lookups <= 2 * per_interval + 1, lookups
