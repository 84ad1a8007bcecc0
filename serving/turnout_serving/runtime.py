"""The server's state (loading, warm-up, readiness) and its one data plane, `Runtime.infer`.

`Runtime` owns what a request needs once the model is up (predictor, drift window, feedback
store). Every inference request, whatever endpoint or protocol it came in, is answered by
`infer`, which owns its whole path: readiness, reading with the batch work limits, the choice of
event loop or scoring thread, scoring, the answer's body (`dataplane.py` holds what differs by
protocol), and the side effects of live traffic: count rows, feed drift, keep the predictions
for feedback, hand the answer to the mirror of shadow traffic (`on_live_answer`). Endpoints
(`routes.py`, `oip.py`) only translate HTTP to an `InferenceRequest` and the `Answer` back, so
none can forget a side effect. Scoring runs in worker threads too, so the shared parts are
guarded by one lock each.

A model that cannot be loaded (or fails its warm-up) is final: the state says why and
`on_failure` is called, which `cli.py` answers by ending the process with status 3, so a
Kubernetes pod shows the reason instead of staying unready. Only an artifact store that does not
answer is retried, with backoff, for `artifact_timeout_seconds` in all.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
from prometheus_client import CollectorRegistry

from turnout_serving.dataplane import (
    Answer,
    InferenceRequest,
    Read,
    read_request,
    scores_inline,
    write_answer,
)
from turnout_serving.domain.backoff import Backoff
from turnout_serving.domain.feedback import (
    FeedbackResult,
    PredictionStore,
    QualityWindow,
    labels_for,
)
from turnout_serving.domain.limits import BatchLimits
from turnout_serving.errors import ModelNotReady
from turnout_serving.metrics import ServingMetrics
from turnout_serving.model_source import ArtifactsUnavailable, LoadedModel, ResolvedSource
from turnout_serving.predictor import Predictor, Scored
from turnout_serving.quality_metrics import TrainingGauges
from turnout_serving.settings import ServingSettings

log = logging.getLogger("turnout_serving")


class ModelProvider(Protocol):
    """Where the model comes from: resolved up front (for labels), loaded in the background."""

    source: ResolvedSource

    def load(self) -> LoadedModel: ...

    def training_metrics(self, run_id: str) -> dict[str, float]:
        """What the training run logged; empty when it cannot be read (never raises)."""
        ...


RETRY_FIRST_SECONDS = 2.0
RETRY_MAX_SECONDS = 60.0


@dataclass
class Readiness:
    ready: bool = False
    loading: bool = True
    error: str | None = None
    drift_status: str = "not loaded yet"


class Runtime:
    def __init__(
        self,
        settings: ServingSettings,
        provider: ModelProvider,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.registry = registry
        self.state = Readiness()
        self.on_failure: Callable[[str], None] | None = None  # told why the model cannot serve
        # told of every live answer, with its scoring time (the mirror of shadow traffic); it
        # must return at once and never raise into the request
        self.on_live_answer: Callable[[InferenceRequest, Answer, float], None] | None = None
        self._clock = clock
        self._stopping = threading.Event()
        source = provider.source
        self.metrics = ServingMetrics(
            registry,
            model=source.name or "local",
            version=source.version or source.run_id[:8] or "local",
            color=settings.color,
        )
        self.model: LoadedModel | None = None
        self.predictor: Predictor | None = None
        self.drift: Any = None  # drift_metrics.DriftCollector once a reference is loaded
        self._limits = BatchLimits(settings.max_rows, settings.max_cells)
        self._feedback_lock = threading.Lock()
        self.store = PredictionStore(
            settings.feedback_ttl_seconds, settings.feedback_max_predictions, clock
        )
        self.quality: QualityWindow | None = None
        self._quality_gauges: Any = None
        self.training = TrainingGauges(registry, self.metrics.labels)

    # --- start-up -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ends a load that is waiting to retry (server shutdown)."""
        self._stopping.set()

    def _load_with_retries(self) -> LoadedModel | None:
        """The model, retrying with capped backoff while the artifact store does not answer
        (a pod restarted while MLflow or S3 is briefly down comes up by itself), for
        `artifact_timeout_seconds` in all; None when stopped. Other failures are not retried."""
        budget = self.settings.artifact_timeout_seconds
        backoff = Backoff(budget, RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS)
        started, attempt = self._clock(), 0
        while True:
            try:
                return self.provider.load()
            except ArtifactsUnavailable as exc:
                delay = backoff.delay(attempt, self._clock() - started)
                if delay is None:
                    raise ArtifactsUnavailable(
                        f"{exc} (gave up after {budget:g}s: see --artifact-timeout)"
                    ) from exc
                self.state.error = f"{exc} (retrying in {delay:.0f}s)"
                log.warning("%s", self.state.error)
            if self._stopping.wait(delay):
                return None
            attempt += 1

    def load(self) -> None:
        """Load, wire drift and feedback, warm up; readiness turns true only if all succeed."""
        try:
            loaded = self._load_with_retries()
            if loaded is None:
                return
            model = loaded
            self.metrics.load_seconds.set(model.load_seconds)
            self.metrics.download_seconds.set(model.download_seconds)
            self.metrics.model_info(
                run_id=model.source.run_id, flavor=model.flavor, uri=model.source.uri
            )
            predictor = Predictor(model)
            self.model, self.predictor = model, predictor
            self._wire_drift(model)
            self._wire_quality(model)
            self._warm_up(model, predictor)
        except Exception as exc:
            log.exception("the model cannot be served: %s", exc)
            self.state = Readiness(ready=False, loading=False, error=str(exc))
            if self.on_failure is not None:
                self.on_failure(str(exc))
            return
        self.state.ready, self.state.loading = True, False
        self.metrics.ready.set(1)
        log.info(
            "serving %s version %s (run %s, flavor %s, fast path %s)",
            model.name, model.version, model.source.run_id, model.flavor,
            "on" if predictor.fast_path else "off",
        )  # fmt: skip
        self._read_training_metrics(model)

    def _read_training_metrics(self, model: LoadedModel) -> None:
        """Once serving: a slow tracking server delays these figures, never readiness, and a
        failure here costs the figures only."""
        try:
            self.training.set(self.provider.training_metrics(model.source.run_id))
        except Exception:
            log.exception("cannot export the training run's metrics")

    def _warm_up(self, model: LoadedModel, predictor: Predictor) -> None:
        example = model.input_example
        if not self.settings.warmup or example is None:
            return
        frame = example if isinstance(example, pd.DataFrame) else pd.DataFrame(example)
        started = time.perf_counter()
        predictor.score_parsed(predictor.parse_frame(frame), request_id="warm-up")
        log.info("warm-up prediction on the input example took %.1f ms",
                 1000 * (time.perf_counter() - started))  # fmt: skip

    def _wire_drift(self, model: LoadedModel) -> None:
        from turnout_serving.drift_metrics import wire_drift

        def failed(reason: str) -> None:
            self.state.drift_status = f"failed: {reason}; drift is off until restart"

        self.drift, self.state.drift_status = wire_drift(
            self.settings.drift_enabled, model.reference, model.source.run_id,
            self.settings.drift_window_rows, self.metrics.labels, failed,
        )  # fmt: skip
        if self.drift is not None:
            self.registry.register(self.drift)
        log.info("drift %s", self.state.drift_status)

    def _wire_quality(self, model: LoadedModel) -> None:
        from turnout_serving.quality_metrics import QualityGauges

        task = _task_of(model)
        self.quality = QualityWindow(self.settings.feedback_window, task)
        self._quality_gauges = QualityGauges(self.registry, self.metrics.labels, task)

    # --- requests -------------------------------------------------------------------------

    def require_ready(self) -> Predictor:
        if self.predictor is None or not self.state.ready:
            raise ModelNotReady(self.state.error or "The model is still loading.")
        return self.predictor

    async def infer(self, request: InferenceRequest) -> Answer:
        """Answer one inference request in the protocol it came in; raises `ServingError`s.

        Small bodies for a quick fast-path model are read and scored on the event loop
        (`dataplane.scores_inline`); MLflow's own parsers and `predict` (the general path), and
        everything else, run in a scoring thread, keeping the loop free for health checks. A
        live answer is then handed to `on_live_answer` (on the event loop), a copy's never.
        """
        started = time.perf_counter()
        answer = await self._infer(request)
        if request.live and self.on_live_answer is not None:
            self.on_live_answer(request, answer, time.perf_counter() - started)
        return answer

    async def _infer(self, request: InferenceRequest) -> Answer:
        predictor = self.require_ready()
        if not scores_inline(predictor, request):
            return await asyncio.to_thread(self._answer, predictor, request)
        read = read_request(request, predictor, self._limits)
        if read.parsed.batch is None:
            return await asyncio.to_thread(self._answer, predictor, request, read)
        return self._answer(predictor, request, read)

    def _answer(
        self, predictor: Predictor, request: InferenceRequest, read: Read | None = None
    ) -> Answer:
        """Read (unless read already), score, write; then, for live traffic only, the side
        effects, once the answer is sure: a request refused anywhere before leaves none."""
        if read is None:
            read = read_request(request, predictor, self._limits)
        scored = predictor.score_parsed(read.parsed, request.request_id)
        body = write_answer(request, read, scored, self.metrics.labels)
        if request.live:
            self._record(scored, request.request_id)
        return Answer(body, scored)

    def _record(self, scored: Scored, request_id: str) -> None:
        """What a live answer leaves behind: its rows counted, its traffic in the drift window,
        its predictions kept for the feedback that names its request id."""
        self.metrics.rows.inc(scored.rows)
        if self.drift is not None:
            self.drift.observe(scored.columns, scored.predictions)
        if scored.predictions is not None:
            with self._feedback_lock:
                self.store.record(request_id, scored.predictions)

    def feedback(self, request_id: str, label: Any) -> FeedbackResult:
        self.require_ready()
        with self._feedback_lock:
            result, predictions = self.store.take(request_id)
            if predictions is not None:
                labels = labels_for(predictions, label, self.quality.task if self.quality else "")
                if labels is None:
                    self.store.record(request_id, predictions)  # keep it for a corrected label
                    result = FeedbackResult.INVALID
                elif self.quality is not None:
                    self.quality.add(predictions.tolist(), labels)
                    self._quality_gauges.update(self.quality.quality())
        self._quality_gauges.count(result)
        return result


def _task_of(model: LoadedModel) -> str:
    """Classification when the estimator says so or the signature's output is a label type."""
    if model.flavor == "sklearn":
        from sklearn.base import is_classifier

        return "classification" if is_classifier(model.pyfunc.get_raw_model()) else "regression"
    outputs = model.pyfunc.metadata.get_output_schema()
    kinds = {str(getattr(spec.type, "name", "")) for spec in outputs.inputs} if outputs else set()
    return "classification" if kinds & {"string", "boolean", "long", "integer"} else "regression"
