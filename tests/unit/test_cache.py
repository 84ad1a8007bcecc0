"""The operator's read-your-writes view of kopf's indexes (operator/turnout_operator/cache.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kopf._core.engines.indexing import Store

from turnout_operator.cache import KINDS, UNSEEN_SECONDS, Cache, slim_deployment, slim_pod


def obj(name: str, rv: int | str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml", "resourceVersion": str(rv)}, **extra}


class Indexes:
    """kopf's indexes as the cache sees them: (namespace, name) -> the values of the objects."""

    def __init__(self) -> None:
        self.by_kind: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = {
            kind: {} for kind in KINDS
        }

    def put(self, kind: str, body: dict[str, Any], key: str | None = None) -> None:
        self.by_kind[kind][("ml", key or body["metadata"]["name"])] = [body]

    def drop(self, kind: str, name: str) -> None:
        self.by_kind[kind].pop(("ml", name), None)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def indexes() -> Indexes:
    return Indexes()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(indexes: Indexes, clock: Clock) -> Cache:
    made = Cache(clock=clock)
    made.attach(indexes.by_kind)  # type: ignore[arg-type]
    return made


def test_a_cache_not_attached_says_so_and_reads_nothing() -> None:
    cache = Cache()
    assert not cache.attached
    with pytest.raises(LookupError, match="index of services is not attached"):
        cache.get("services", "ml", "x")


def test_reads_what_the_index_holds_when_nothing_was_written(
    cache: Cache, indexes: Indexes
) -> None:
    indexes.put("services", obj("svc", 7))
    assert cache.get("services", "ml", "svc") == obj("svc", 7)
    assert cache.get("services", "ml", "other") is None


def test_a_write_reads_back_until_the_index_has_caught_up(cache: Cache, indexes: Indexes) -> None:
    indexes.put("services", obj("svc", 7, spec={"selector": {"color": "blue"}}))
    cache.wrote("services", obj("svc", 9, spec={"selector": {"color": "green"}}))
    assert cache.get("services", "ml", "svc")["spec"] == {"selector": {"color": "green"}}
    indexes.put("services", obj("svc", 9, spec={"selector": {"color": "green"}}))
    assert cache.get("services", "ml", "svc") == obj(
        "svc", 9, spec={"selector": {"color": "green"}}
    )
    # forgotten once seen: a later change by someone else is read as the index has it
    indexes.put("services", obj("svc", 12, spec={"selector": {"color": "blue"}}))
    assert cache.get("services", "ml", "svc")["spec"] == {"selector": {"color": "blue"}}


def test_an_index_already_past_the_write_wins(cache: Cache, indexes: Indexes) -> None:
    """Resource versions compare as integers: 10 is newer than 9, whatever their strings say."""
    cache.wrote("services", obj("svc", 9, spec={"mine": True}))
    indexes.put("services", obj("svc", 10, spec={"theirs": True}))
    assert cache.get("services", "ml", "svc")["spec"] == {"theirs": True}


def test_a_write_is_kept_slim_as_the_index_keeps_it(cache: Cache, indexes: Indexes) -> None:
    full = obj("d", 5, spec={"replicas": 2, "template": {"metadata": {"labels": {"v": "3"}},
                                                         "spec": {"containers": [{"name": "x"}]}}})  # fmt: skip
    cache.wrote("deployments", full)
    assert cache.get("deployments", "ml", "d") == slim_deployment(full)
    assert "containers" not in str(cache.get("deployments", "ml", "d"))


def test_a_deletion_reads_as_gone_until_the_index_shows_something_newer(
    cache: Cache, indexes: Indexes
) -> None:
    indexes.put("horizontalpodautoscalers", obj("hpa", 4))
    cache.deleted("horizontalpodautoscalers", "ml", "hpa")
    assert cache.get("horizontalpodautoscalers", "ml", "hpa") is None  # the index lags
    indexes.put("horizontalpodautoscalers", obj("hpa", 6))  # made again meanwhile
    assert cache.get("horizontalpodautoscalers", "ml", "hpa") == obj("hpa", 6)
    cache.deleted("horizontalpodautoscalers", "ml", "hpa")
    indexes.drop("horizontalpodautoscalers", "hpa")
    assert cache.get("horizontalpodautoscalers", "ml", "hpa") is None
    indexes.put("horizontalpodautoscalers", obj("hpa", 5))  # an old version cannot come back
    assert cache.get("horizontalpodautoscalers", "ml", "hpa") == obj("hpa", 5)


def test_deleting_what_was_never_seen_changes_nothing(cache: Cache) -> None:
    cache.deleted("poddisruptionbudgets", "ml", "nothing")
    assert cache.get("poddisruptionbudgets", "ml", "nothing") is None


def test_a_created_object_reads_back_before_the_watch_shows_it_but_not_for_ever(
    cache: Cache, indexes: Indexes, clock: Clock
) -> None:
    cache.wrote("services", obj("new", 3))
    assert cache.get("services", "ml", "new") == obj("new", 3)
    clock.now += UNSEEN_SECONDS - 1
    assert cache.get("services", "ml", "new") == obj("new", 3)
    clock.now += 2  # a watch that has not shown a creation by now: deleted meanwhile
    assert cache.get("services", "ml", "new") is None
    indexes.put("services", obj("new", 3))
    assert cache.get("services", "ml", "new") == obj("new", 3)


def test_a_model_deployment_gone_from_the_index_is_gone_whatever_was_written(
    cache: Cache, indexes: Indexes
) -> None:
    indexes.put("modeldeployments", obj("md", 3))
    cache.wrote("modeldeployments", obj("md", 4, status={"phase": "Healthy"}))
    assert cache.get("modeldeployments", "ml", "md")["status"] == {"phase": "Healthy"}
    indexes.drop("modeldeployments", "md")
    assert cache.get("modeldeployments", "ml", "md") is None


def test_an_answer_without_a_readable_version_leaves_the_index_to_say(
    cache: Cache, indexes: Indexes
) -> None:
    indexes.put("services", obj("svc", 7))
    cache.wrote("services", obj("svc", "not-a-number"))
    assert cache.get("services", "ml", "svc") == obj("svc", 7)


def test_pods_are_read_by_their_model_deployment(cache: Cache, indexes: Indexes) -> None:
    indexes.by_kind["pods"][("ml", "diabetes")] = [obj("p1", 1), obj("p2", 2)]
    assert [p["metadata"]["name"] for p in cache.pods("ml", "diabetes")] == ["p1", "p2"]
    assert cache.pods("ml", "other") == []


def test_slim_forms_keep_what_the_operator_reads() -> None:
    deployment = {
        "metadata": {"name": "d", "namespace": "ml", "uid": "u", "resourceVersion": "4",
                     "generation": 3, "labels": {"a": "b"},
                     "annotations": {"turnout.dev/template-hash": "h"}, "managedFields": [{}]},
        "spec": {"replicas": 2, "selector": {}, "template": {
            "metadata": {"labels": {"turnout.dev/version": "7"}}, "spec": {"containers": []}}},
        "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2,
                   "availableReplicas": 1},
    }  # fmt: skip
    slim = slim_deployment(deployment)
    assert slim == {
        "metadata": {k: v for k, v in deployment["metadata"].items() if k != "managedFields"},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"turnout.dev/version": "7"}}}},
        "status": deployment["status"],
    }
    waiting = {"waiting": {"reason": "CrashLoopBackOff"}}
    ended = {"terminated": {"message": "No module named 'xgboost'"}}
    pod = {
        "metadata": {"name": "p", "namespace": "ml", "resourceVersion": "9", "labels": {"c": "d"}},
        "spec": {"containers": [{"name": "serve"}]},
        "status": {"podIP": "10.0.0.2", "phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True"},
                                  {"type": "PodScheduled", "status": "True"}],
                   "containerStatuses": [{"name": "serve", "state": waiting, "lastState": ended,
                                          "image": "x"}]},
    }  # fmt: skip
    assert slim_pod(pod) == {
        "metadata": pod["metadata"],
        "status": {"podIP": "10.0.0.2", "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"state": waiting, "lastState": ended}]},
    }  # fmt: skip


def test_readers_in_other_threads_see_whole_values_while_the_index_changes(
    cache: Cache, indexes: Indexes
) -> None:
    """kopf adds, replaces and discards an index's values on its loop (its own Store, through
    the calls its indexers make) while reconcile threads read them."""
    store: Store[dict[str, Any]] = Store()
    indexes.by_kind["pods"][("ml", "md")] = store  # type: ignore[assignment]
    stop = threading.Event()
    failures: list[BaseException] = []
    seen: list[int] = []

    def read() -> None:
        try:
            while not stop.is_set():
                pods = cache.pods("ml", "md")
                assert all(p["metadata"]["name"].startswith("p") for p in pods)
                seen.append(len(pods))
        except BaseException as exc:
            failures.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    try:
        for i in range(20_000):
            key = ("ml", f"p{i % 7}", f"uid-{i % 7}")
            if i % 3:
                store._replace(key, obj(f"p{i % 7}", i))
            else:
                store._discard(key)
    finally:
        stop.set()
        for thread in readers:
            thread.join(10)
    assert failures == []
    assert len(set(seen)) > 1  # the readers did see the store change size


def test_a_cache_not_attached_remembers_no_write() -> None:
    cache = Cache()
    cache.wrote("services", obj("svc", 3))
    cache.deleted("services", "ml", "svc")
    cache.attach(Indexes().by_kind)  # type: ignore[arg-type]
    assert cache.get("services", "ml", "svc") is None
