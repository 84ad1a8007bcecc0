"""A model that cannot be served ends the server with the reason; an artifact store that does
not answer is retried within --artifact-timeout, then the same."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from turnout_serving.model_source import (
    ArtifactsUnavailable,
    LoadedModel,
    ModelSourceError,
    ResolvedSource,
)
from turnout_serving.runtime import Runtime
from turnout_serving.settings import ServingSettings


class Failing:
    """A provider whose load always raises `error` after a second (of fake time)."""

    source = ResolvedSource("models:/M/1", "models:/M/1", "registry/M/1", name="M", version="1")

    def __init__(self, error: Exception, now: list[float]) -> None:
        self.error = error
        self.now = now
        self.attempts = 0

    def load(self) -> LoadedModel:
        self.attempts += 1
        self.now[0] += 1
        raise self.error

    def training_metrics(self, run_id: str) -> dict[str, float]:
        return {}


def runtime_for(
    error: Exception, artifact_timeout: float = 300
) -> tuple[Runtime, Failing, list[str], list[float]]:
    now = [0.0]
    provider = Failing(error, now)
    settings = ServingSettings(model_uri="models:/M/1", artifact_timeout_seconds=artifact_timeout)
    runtime = Runtime(settings, provider, CollectorRegistry(), clock=lambda: now[0])
    told: list[str] = []
    waits: list[float] = []

    def wait(seconds: float) -> bool:  # the backoff's waits pass in fake time
        waits.append(seconds)
        now[0] += seconds
        return False  # not stopped

    runtime.on_failure = told.append
    runtime._stopping.wait = wait  # type: ignore[method-assign]
    return runtime, provider, told, waits


def test_a_model_that_cannot_load_is_final_and_says_why() -> None:
    error = ModelSourceError("Cannot load the model at /m: No module named 'shouting'")
    runtime, provider, told, waits = runtime_for(error)
    runtime.load()
    assert (provider.attempts, waits) == (1, [])
    assert told == ["Cannot load the model at /m: No module named 'shouting'"]
    assert (runtime.state.ready, runtime.state.loading, runtime.state.error) == (
        False, False, told[0])  # fmt: skip


@pytest.mark.parametrize(
    ("timeout", "waits"),
    [(5, [2, 1]), (25, [2, 4, 8, 7]), (75, [2, 4, 8, 16, 32, 7])],
)
def test_an_artifact_store_that_does_not_answer_is_retried_within_the_timeout(
    timeout: float, waits: list[float]
) -> None:
    """Each attempt takes a second; the waits double from 2 s and never run past the timeout."""
    error = ArtifactsUnavailable("Cannot download models:/M/1 from the artifact store")
    runtime, provider, told, waited = runtime_for(error, artifact_timeout=timeout)
    runtime.load()
    assert (waited, provider.attempts) == (waits, len(waits) + 1)
    assert told == [f"Cannot download models:/M/1 from the artifact store (gave up after "
                    f"{timeout:g}s: see --artifact-timeout)"]  # fmt: skip
    assert runtime.state.loading is False


def test_without_a_listener_the_failure_stays_in_the_state() -> None:
    runtime, *_ = runtime_for(ModelSourceError("broken"))
    runtime.on_failure = None
    runtime.load()
    assert runtime.state.error == "broken"
