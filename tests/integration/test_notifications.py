"""Notifications end to end: the real operator against the Kubernetes API emulator and the real
MLflow registry, sending to real HTTP receivers on 127.0.0.1. A rollout reaches the channels its
spec.notifications selects, in each channel's format and nothing unselected; a receiver that is
down while the rollout runs gets everything once it is back, and never held the rollout up; one
that never answers is given up after the bounded retries, and counted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cloudevents.http import from_http

from tests.conftest import Registry, free_port, wait_until
from tests.integration.cluster import Cluster, condition, running_cluster
from tests.receiver import Receiver

pytestmark = pytest.mark.slow
SOURCE = "/apis/turnout.dev/v1alpha1/namespaces/default/modeldeployments/"
STRATEGY = {"blueGreen": {"smokeTest": False, "scaleDownDelaySeconds": 1}}


@contextmanager
def cluster_with(
    registry: Registry, home: Path, channels: list[dict[str, str]], **settings: str
) -> Iterator[Cluster]:
    env = {"TURNOUT_OPERATOR_NOTIFICATION_CHANNELS": json.dumps(channels),
           **{f"TURNOUT_OPERATOR_NOTIFICATION_{k.upper()}": v for k, v in settings.items()}}  # fmt: skip
    yield from running_cluster(registry, home, pods="available", extra_env=env)


def counted(cluster: Cluster, channel: str, result: str) -> float:
    return cluster.metric(
        f'turnout_operator_notifications_total{{channel="{channel}",result="{result}"}}'
    )


def cloudevents(receiver: Receiver) -> list[Any]:
    return [from_http({"content-type": r.content_type}, r.body) for r in receiver.delivered()]


def test_a_rollout_reaches_the_selected_channels_in_their_formats(
    mlflow_registry: Registry, tmp_path: Path
) -> None:
    with Receiver() as chat, Receiver() as events, Receiver(hang=True) as silent:
        channels = [
            {"name": "chat", "url": chat.url, "format": "slack"},
            {"name": "events", "url": events.url, "format": "cloudevents"},
            {"name": "silent", "url": silent.url, "format": "json"},
        ]
        with cluster_with(mlflow_registry, tmp_path, channels, retries="2",
                                    retry_seconds="0.1", timeout_seconds="1") as cluster:  # fmt: skip
            cluster.apply("notified", {"name": "Diabetes", "version": "1"}, strategy=STRATEGY,
                          notifications=[
                              {"channel": "chat", "events": ["rollout.promoted"]},
                              {"channel": "events",
                               "events": ["rollout.started", "rollout.promoted"]},
                              {"channel": "silent", "events": ["rollout.promoted"]},
                          ])  # fmt: skip
            cluster.wait_phase("notified", "Healthy", activeVersion="1", activeColor="blue")
            cluster.patch_spec("notified", {"model": {"name": "Diabetes", "version": "2"}})
            cluster.wait_phase("notified", "Healthy", activeVersion="2", activeColor="green")

            wait_until(lambda: len(events.delivered()) == 4, timeout=30, what="4 CloudEvents")
            got = cloudevents(events)
            assert [(e["type"], e["subject"]) for e in got] == [
                ("dev.turnout.rollout.started", "models:/Diabetes/1"),
                ("dev.turnout.rollout.promoted", "models:/Diabetes/1"),
                ("dev.turnout.rollout.started", "models:/Diabetes/2"),
                ("dev.turnout.rollout.promoted", "models:/Diabetes/2"),
            ]
            assert {e["source"] for e in got} == {SOURCE + "notified"}
            assert {e["specversion"] for e in got} == {"1.0"}
            assert len({e["id"] for e in got}) == 4
            assert got[3].data == {
                "namespace": "default", "name": "notified", "model": "Diabetes",
                "version": "2", "reason": "Promoted", "message": "version 2 (green) is active",
            }  # fmt: skip

            wait_until(lambda: len(chat.delivered()) == 2, timeout=30, what="2 chat messages")
            assert [r.content_type for r in chat.delivered()] == [
                "application/json; charset=utf-8"
            ] * 2
            assert [r.json()["text"] for r in chat.delivered()] == [
                ":white_check_mark: default/notified: promoted, Diabetes version 1: "
                "version 1 (blue) is active",
                ":white_check_mark: default/notified: promoted, Diabetes version 2: "
                "version 2 (green) is active",
            ]
            # the one that never answers: each promotion tried 3 times, then given up
            wait_until(lambda: counted(cluster, "silent", "dropped") == 2, timeout=30,
                       what="both promotions given up on the silent channel")  # fmt: skip
            assert counted(cluster, "silent", "retried") == 4
            assert counted(cluster, "silent", "sent") == 0
            assert silent.server_requests() == 6
            assert (counted(cluster, "events", "sent"), counted(cluster, "chat", "sent")) == (4, 2)
            assert counted(cluster, "chat", "overflow") == 0
            # nothing unselected went out: no rollout.started to chat, nothing more anywhere
            assert len(chat.received) == 2 and len(events.received) == 4


def test_a_channel_the_operator_lacks_shows_in_status_and_events(
    mlflow_registry: Registry, tmp_path: Path
) -> None:
    channels = [{"name": "chat", "url": f"http://127.0.0.1:{free_port()}/", "format": "slack"}]
    with cluster_with(mlflow_registry, tmp_path, channels) as cluster:
        cluster.apply("misnamed", {"name": "Diabetes", "version": "1"}, strategy=STRATEGY,
                      notifications=[{"channel": "pagerduty", "events": ["rollout.aborted"]}])  # fmt: skip
        status = cluster.wait_phase("misnamed", "Degraded")
        why = ("spec.notifications[0].channel: no notification channel 'pagerduty' is "
               "configured in the operator (configured: chat)")  # fmt: skip
        assert (condition(status, "Degraded")["reason"], condition(status, "Degraded")["message"]) == (
            "InvalidSpec", why,
        )  # fmt: skip
        cluster.wait_event("misnamed", "InvalidSpec")
        assert cluster.deployment("misnamed-blue") is None


def test_a_receiver_down_during_the_rollout_gets_everything_once_back(
    mlflow_registry: Registry, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens yet: connections are refused
    channels = [{"name": "ops", "url": f"http://127.0.0.1:{port}/hook", "format": "cloudevents"}]
    with cluster_with(mlflow_registry, tmp_path, channels, retries="10",
                                retry_seconds="0.2", timeout_seconds="1") as cluster:  # fmt: skip
        cluster.apply("flaky", {"name": "Diabetes", "version": "1"}, strategy=STRATEGY,
                      notifications=[{"channel": "ops",
                                      "events": ["rollout.started", "rollout.promoted"]}])  # fmt: skip
        cluster.wait_phase("flaky", "Healthy", activeVersion="1", activeColor="blue")
        # the rollout ended while its notifications could not be delivered: it never waited
        wait_until(lambda: counted(cluster, "ops", "retried") >= 1, timeout=10,
                   what="a retry on the refused channel")  # fmt: skip
        assert counted(cluster, "ops", "sent") == 0

        with Receiver(port=port, answers=[500, 500]) as back:  # up, failing, then taking them
            wait_until(lambda: len(back.delivered()) == 2, timeout=60, what="2 deliveries")
            assert [r.answered for r in back.received] == [500, 500, 200, 200]
            assert [e["type"] for e in cloudevents(back)] == [
                "dev.turnout.rollout.started", "dev.turnout.rollout.promoted",
            ]  # fmt: skip
            wait_until(lambda: counted(cluster, "ops", "sent") == 2, timeout=10, what="2 sent")
            assert counted(cluster, "ops", "dropped") == 0
            assert counted(cluster, "ops", "retried") >= 3  # refused at least once, two 500s
