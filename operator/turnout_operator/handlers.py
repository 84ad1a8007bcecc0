"""kopf glue: one daemon per ModelDeployment runs its reconciles, one at a time.

A daemon sleeps until its next timer (from the planner), a resync, or a wake-up: any change to
the ModelDeployment itself (spec, annotations) or to the Deployments, Pods and retraining Jobs it
owns wakes it at once. So a rollout advances as soon as the cluster moves, reconciles of one
object never overlap, and nothing is lost across operator restarts (all state is in the status
and the cluster).

The reconcile itself (`reconcile.Reconciler`) is synchronous and runs on the operator's own
reconcile threads; the registry questions it leaves (`Outcome.ask`) run on a separate, bounded set
of registry threads, and only the asking object's daemon awaits the answer. Neither uses the
event loop's default executor, which kopf and its HTTP client share: a registry that never
answers holds one registry thread for its timeout and delays no other ModelDeployment.

What a reconcile reads of the cluster comes from kopf's indexes of the operator's kinds (below:
the ModelDeployments, and the Deployments, Services, Pods, autoscalers and disruption budgets it
made), which kopf fills from its first listing before any daemon starts; cache.py adds the
operator's own writes the watch has not shown yet. The API server sees the writes.

When an answer is due (a new spec, the poll, a retry) the daemon asks before its reconcile and
waits up to ANSWER_GRACE_SECONDS for it, so that one reconcile acts on the answer and writes the
status once. A registry webhook (webhooks.py) wakes the daemons of the ModelDeployments serving
its model with a refresh: the daemon asks at once, instead of at the next poll. The refresh is a
moment: the answer must have been fetched after the delivery came, and the daemons woken by one
delivery share one fetch (answers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import kopf

from turnout_operator.cache import KINDS, SLIM, Kind
from turnout_operator.domain.manifests import MANAGED_BY, NAME_LABEL
from turnout_operator.domain.spec import GROUP, PLURAL, VERSION
from turnout_operator.domain.webhooks import following
from turnout_operator.kube import Stale

log = logging.getLogger("turnout_operator")
ERROR_BACKOFF_SECONDS = (2.0, 5.0, 15.0, 30.0, 60.0)
STALE_RETRY_SECONDS = 0.2
# How long a daemon waits for an answer it asked before its reconcile: the registry answers in
# milliseconds, and then one reconcile acts on it and writes the status once. A slower registry
# delays the reconcile by this much only: it runs without the answer, and again when it comes.
ANSWER_GRACE_SECONDS = 0.5


def _wakers(memo: Any) -> dict[tuple[str, str], asyncio.Event]:
    """The daemons' wake-up events, by (namespace, name). kopf hands every object its own
    shallow copy of the operator's memo, so this dict must be in the memo before kopf starts
    (`new_memo`): one made later would be private to the object whose handler made it, and a
    Deployment's or Pod's event would never reach its ModelDeployment's daemon."""
    wakers: dict[tuple[str, str], asyncio.Event] = memo["wakers"]
    return wakers


@dataclass(frozen=True)
class Pools:
    """The threads blocking work runs on: reconciles, and registry questions."""

    reconcile: ThreadPoolExecutor
    registry: ThreadPoolExecutor

    @classmethod
    def sized(cls, reconcile_workers: int, registry_workers: int) -> Pools:
        return cls(
            ThreadPoolExecutor(reconcile_workers, thread_name_prefix="turnout-reconcile"),
            ThreadPoolExecutor(registry_workers, thread_name_prefix="turnout-registry"),
        )

    def shutdown(self) -> None:
        for pool in (self.reconcile, self.registry):
            pool.shutdown(wait=False, cancel_futures=True)


def new_memo(reconciler: Any, webhooks: Any = None) -> kopf.Memo:
    """The operator's memo: the reconciler, its thread pools, the daemons' shared wake-up
    events, the registered model each ModelDeployment serves, the ones due to ask the registry
    at once (with the moment the delivery came, on the shared answers' clock), and the webhook
    endpoint (None: off)."""
    settings = reconciler.settings
    pools = Pools.sized(settings.reconcile_workers, settings.registry_workers)
    return kopf.Memo(reconciler=reconciler, wakers={}, pools=pools, models={}, refresh={},
                     webhooks=webhooks)  # fmt: skip


T = TypeVar("T")


async def _on(pool: ThreadPoolExecutor, call: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(pool, call, *args)


async def _within(future: asyncio.Future[T], seconds: float) -> T | None:
    """The future's result if it comes within `seconds` (its error, raised), else None."""
    done, _ = await asyncio.wait({future}, timeout=seconds)
    return future.result() if done else None


def wake(memo: Any, namespace: str | None, name: str | None) -> None:
    if namespace and name:
        waker = _wakers(memo).get((namespace, name))
        if waker is not None:
            waker.set()


def refresh(memo: Any, model: str) -> list[tuple[str, str]]:
    """Make the ModelDeployments serving registered model `model` ask the registry now, for an
    answer fetched from now on."""
    keys = following(memo["models"], model)
    now = memo["reconciler"].answers.clock()
    for key in keys:
        memo["refresh"][key] = now
        wake(memo, *key)
    return keys


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def run(
    stopped: kopf.DaemonStopped, name: str, namespace: str | None, memo: Any, **_: Any
) -> None:
    assert namespace is not None  # the resource is namespaced
    reconciler, pools = memo["reconciler"], memo["pools"]
    waker = _wakers(memo).setdefault((namespace, name), asyncio.Event())
    failures = 0
    try:
        while not stopped:
            waker.clear()
            after = memo["refresh"].pop((namespace, name), None)  # a webhook named its model
            try:
                answer, asked = None, None  # asked: (generation, the answer still to come)
                question = await _on(pools.reconcile, reconciler.question, namespace, name,
                                     after is not None)  # fmt: skip
                if question is not None:  # ask first: the reconcile that follows acts on it
                    coming = asyncio.ensure_future(
                        _on(pools.registry, reconciler.resolve, question, after)
                    )
                    answer = await _within(coming, ANSWER_GRACE_SECONDS)
                    asked = None if answer is not None else (question.generation, coming)
                outcome = await _on(pools.reconcile, reconciler.reconcile, namespace, name, answer)
                if outcome.ask is not None:  # the answer asked first, if for the same spec
                    if asked is not None and asked[0] == outcome.ask.generation:
                        answer = await asked[1]
                    else:
                        answer = await _on(pools.registry, reconciler.resolve, outcome.ask)
                    outcome = await _on(
                        pools.reconcile, reconciler.reconcile, namespace, name, answer
                    )
                delay = outcome.wake
                failures = 0
            except Stale as exc:  # a write made from a read the watch had not caught up with
                log.debug("reconcile of %s/%s again shortly: %s", namespace, name, exc)
                delay = STALE_RETRY_SECONDS
            except Exception:
                log.exception("reconcile of %s/%s failed", namespace, name)
                reconciler.metrics.errors.inc()
                delay = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
                failures += 1
            resync = reconciler.settings.resync_seconds
            timeout = resync if delay is None else min(delay, resync)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), timeout)
    finally:
        _wakers(memo).pop((namespace, name), None)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def model_deployment_changed(
    name: str, namespace: str | None, memo: Any, type: str, spec: Mapping[str, Any], **_: Any
) -> None:
    if namespace is not None:
        if type == "DELETED":
            memo["reconciler"].metrics.observe(namespace, name, None)
            memo["models"].pop((namespace, name), None)
            memo["refresh"].pop((namespace, name), None)
        elif isinstance(model := (spec.get("model") or {}).get("name"), str):
            memo["models"][(namespace, name)] = model
    wake(memo, namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED_BY)
async def deployment_changed(
    labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any
) -> None:
    wake(memo, namespace, labels.get(NAME_LABEL))


@kopf.on.event("", "v1", "pods", labels=MANAGED_BY)
async def pod_changed(
    labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any
) -> None:
    wake(memo, namespace, labels.get(NAME_LABEL))


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED_BY)
async def job_changed(
    labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any
) -> None:
    """A retraining Job moved (started, finished, deleted): its ModelDeployment records it."""
    wake(memo, namespace, labels.get(NAME_LABEL))


# --- the indexes reconciles read (cache.py) ---------------------------------------------------


def index_id(kind: Kind) -> str:
    """The id of `kind`'s index: kopf passes each index to handlers under its id, and
    `attach_cache` hands them over to the cache by it."""
    return f"turnout_{kind}"


def _index_by_name(kind: Kind, group: str, version: str, plural: str, **filters: Any) -> None:
    """Index `kind` by (namespace, name), under `index_id(kind)`."""

    def index(namespace: str | None, name: str, body: Mapping[str, Any], **_: Any) -> Any:
        return {(namespace, name): SLIM[kind](body)}

    kopf.index(group, version, plural, id=index_id(kind), **filters)(index)


@kopf.index("", "v1", "pods", labels=MANAGED_BY, id=index_id("pods"))
def turnout_pods(
    namespace: str | None, labels: Mapping[str, str], body: Mapping[str, Any], **_: Any
) -> dict[tuple[str | None, str | None], Any]:
    """Pods by their ModelDeployment, which reads them a color at a time."""
    return {(namespace, labels.get(NAME_LABEL)): SLIM["pods"](body)}


_index_by_name("modeldeployments", GROUP, VERSION, PLURAL)
_index_by_name("deployments", "apps", "v1", "deployments", labels=MANAGED_BY)
_index_by_name("services", "", "v1", "services", labels=MANAGED_BY)
_index_by_name("horizontalpodautoscalers", "autoscaling", "v2", "horizontalpodautoscalers",
               labels=MANAGED_BY)  # fmt: skip
_index_by_name("poddisruptionbudgets", "policy", "v1", "poddisruptionbudgets", labels=MANAGED_BY)


@kopf.on.startup()
async def attach_cache(memo: Any, **kwargs: Any) -> None:
    memo["reconciler"].kube.cache.attach({kind: kwargs[index_id(kind)] for kind in KINDS})


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # Our own Events say what happened; kopf's per-handler events would only add noise.
    settings.posting.level = logging.WARNING
    # Watching named namespaces needs no cluster-wide read of CRDs and namespaces: the
    # namespaced RBAC (Roles only) is then enough. The CRD must exist before the operator starts.
    settings.scanning.disabled = not memo["reconciler"].settings.all_namespaces
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


@kopf.on.startup()
async def start_webhooks(memo: Any, **_: Any) -> None:
    if memo["webhooks"] is not None:
        await memo["webhooks"].start(lambda model: refresh(memo, model))


@kopf.on.cleanup()
async def stop_pools(memo: Any, **_: Any) -> None:
    if memo["webhooks"] is not None:
        await memo["webhooks"].stop()
    memo["pools"].shutdown()
