"""The operator records each version's live quality on its MLflow model version: labels sent to
the active version (real turnout-serve pods of the emulator, through the API server's service
proxy, as a client in the cluster sends them) show up as its `turnout.live/...` tags in the
real registry; a version with no label yet gets none."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from mlflow import MlflowClient

from tests.conftest import Registry, wait_until
from tests.integration.cluster import ROW, Cluster, running_cluster

pytestmark = pytest.mark.slow
NAME = "live-figures"
PREFIX = f"turnout.live/default.{NAME}."


@pytest.fixture(scope="module")
def cluster(
    mlflow_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    # An hour between reads: what a version carries here comes from the read when it was first
    # seen active, or the one when it stopped being active.
    yield from running_cluster(
        mlflow_registry, tmp_path_factory.mktemp("live"), pods="process",
        extra_env={"TURNOUT_OPERATOR_LIVE_QUALITY_INTERVAL_SECONDS": "3600"},
    )  # fmt: skip


def post(cluster: Cluster, path: str, body: object, request_id: str | None = None) -> object:
    """A request to the active Service through the API server's service proxy; its JSON answer."""
    headers = {"X-Request-Id": request_id} if request_id else {}
    with cluster.kube.http() as http:
        answer = http.post(f"/api/v1/namespaces/default/services/{NAME}:http/proxy/{path}",
                           json=body, headers=headers)  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()


def live_tags(client: MlflowClient, version: str) -> dict[str, str]:
    tags = client.get_model_version("Diabetes", version).tags
    return {k.removeprefix(PREFIX): v for k, v in tags.items() if k.startswith(PREFIX)}


def test_labels_sent_to_a_served_version_end_up_on_its_model_version(cluster: Cluster) -> None:
    client = MlflowClient(cluster.registry.uri)
    strategy = {"blueGreen": {"smokeTest": False, "scaleDownDelaySeconds": 60}}
    started = datetime.now(UTC).replace(microsecond=0)
    cluster.apply(NAME, {"name": "Diabetes", "version": "1"}, strategy=strategy)
    cluster.wait_phase(NAME, "Healthy", timeout=120, activeVersion="1", activeColor="blue")
    rows = [ROW, {**ROW, "bmi": -0.05}]
    answer = post(cluster, "invocations", {"dataframe_records": rows}, "live-1")
    p1, p2 = answer["predictions"]  # type: ignore[index]
    labelled = post(cluster, "feedback", {"request_id": "live-1", "label": [p1 + 3, p2 - 4]})
    assert labelled == {"results": [{"request_id": "live-1", "result": "matched"}]}

    cluster.patch_spec(NAME, {"model": {"name": "Diabetes", "version": "2"}})
    cluster.wait_phase(NAME, "Healthy", timeout=120, activeVersion="2", activeColor="green")
    # the tags are set one at a time, `updated` last
    found = wait_until(lambda: (tags := live_tags(client, "1")) and "updated" in tags and tags,
                       timeout=30, interval=0.5, what="version 1's live figures")  # fmt: skip
    updated = datetime.fromisoformat(found.pop("updated"))
    assert found == {"mae": "3.5", "rmse": "3.53553", "rows": "2"}  # √((9 + 16) / 2)
    assert started <= updated <= datetime.now(UTC)
    assert live_tags(client, "2") == {}  # served, but no label yet
