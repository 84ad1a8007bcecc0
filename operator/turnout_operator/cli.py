"""`turnout-operator run`: the operator, in a cluster (in-cluster config) or outside it
(KUBECONFIG), watching the namespaces given or all of them."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from typing import Any

from turnout_operator.settings import OperatorSettings

log = logging.getLogger("turnout_operator")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="turnout-operator", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="Run the operator.")
    run.add_argument("-n", "--namespace", action="append", dest="namespaces",
                     help="Watch this namespace (repeatable).")  # fmt: skip
    run.add_argument("-A", "--all-namespaces", action="store_true", default=None,
                     help="Watch every namespace (needs the cluster-wide RBAC).")  # fmt: skip
    run.add_argument("--tracking-uri", help="Default MLflow tracking URI.")
    run.add_argument("--serving-image", help="Default turnout-serve image.")
    run.add_argument("--metrics-port", type=int, help="Port of /metrics (0: off).")
    run.add_argument("--liveness", metavar="URL", help="Serve kopf's liveness probe at this URL.")
    run.add_argument("--log-level")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    overrides: dict[str, Any] = {
        key: value
        for key, value in vars(args).items()
        if value is not None and key in OperatorSettings.model_fields
    }
    settings = OperatorSettings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    if not settings.namespaces and not settings.all_namespaces:
        log.error("name the namespaces to watch (--namespace, repeatable) or --all-namespaces")
        return 2
    return _run(settings, args.liveness)


def _run(settings: OperatorSettings, liveness: str | None) -> int:
    import kopf
    from kubernetes import client, config
    from prometheus_client import CollectorRegistry, start_http_server

    from turnout_operator import handlers, standby  # importing handlers registers them
    from turnout_operator.kube import Kube
    from turnout_operator.metrics import OperatorMetrics
    from turnout_operator.notifier import RESULTS, Notifier
    from turnout_operator.reconcile import Reconciler
    from turnout_operator.registry import ModelRegistry
    from turnout_operator.tags import TagWriter
    from turnout_operator.webhooks import WebhookConfigError, WebhookReceiver

    in_cluster = _load_cluster_config(config)
    if in_cluster is None:
        return 2
    registry = CollectorRegistry()
    metrics = OperatorMetrics(registry)
    elector = None
    if settings.leader_election:
        try:
            elector = _elector(settings, client.ApiClient(), metrics)
        except ValueError as exc:
            log.error("%s", exc)
            return 2
    webhooks = None
    if settings.webhook_port:
        try:
            webhooks = WebhookReceiver(settings, registry)
        except WebhookConfigError as exc:
            log.error("%s", exc)
            return 2
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=registry)
    if elector is None:
        metrics.leader.set(1)
    else:
        elector.start()
        if not standby.wait_until_elected(elector.elected, liveness):
            elector.stop()
            return 0  # stopped while a standby
    metrics.notification_channels([c.name for c in settings.notification_channels], RESULTS)
    notifier = Notifier(
        settings.notification_channels, count=metrics.notification,
        queue_size=settings.notification_queue_size, retries=settings.notification_retries,
        retry_seconds=settings.notification_retry_seconds,
        timeout_seconds=settings.notification_timeout_seconds,
    )  # fmt: skip
    registries = functools.partial(ModelRegistry, timeout_seconds=settings.registry_timeout_seconds)
    reconciler = Reconciler(
        kube=Kube(client.ApiClient()), registries=registries, settings=settings,
        metrics=metrics, tags=TagWriter(on_pending=metrics.tags_pending.set),
        notifier=notifier, in_cluster=in_cluster,
    )  # fmt: skip
    reconciler.live.start()
    watched = "all namespaces" if settings.all_namespaces else ", ".join(settings.namespaces)
    log.info("watching %s (%s)", watched, "in cluster" if in_cluster else "out of cluster")
    kopf.run(
        standalone=True,
        clusterwide=settings.all_namespaces,
        namespaces=() if settings.all_namespaces else settings.namespaces,
        memo=handlers.new_memo(reconciler, webhooks),
        liveness_endpoint=liveness,
    )
    reconciler.live.stop()
    if elector is not None:
        elector.stop()  # releases the Lease: a standby takes over at once
    if not reconciler.tags.idle(timeout=5.0):
        log.warning("stopping with %d MLflow tags unwritten", len(reconciler.tags.pending))
    reconciler.tags.stop()
    if not notifier.idle(timeout=5.0):
        log.warning("stopping with notifications unsent")
    notifier.stop()
    return 0


def _elector(settings: OperatorSettings, api: Any, metrics: Any) -> Any:
    """The Lease's candidate for this process; ValueError when the settings cannot work."""
    import socket

    from turnout_operator.domain.leader import Timing
    from turnout_operator.leader import Elector, PodMark

    namespace = settings.leader_election_namespace or settings.pod_namespace
    if not namespace:
        raise ValueError(
            "leader election needs the Lease's namespace: set TURNOUT_OPERATOR_POD_NAMESPACE "
            "(the chart sets it from the pod) or TURNOUT_OPERATOR_LEADER_ELECTION_NAMESPACE"
        )
    timing = Timing(settings.leader_election_lease_seconds,
                    settings.leader_election_renew_deadline_seconds,
                    settings.leader_election_retry_seconds)  # fmt: skip
    identity = settings.pod_name or f"{socket.gethostname()}_{os.getpid()}"
    metrics.leader.set(0)
    mark = None
    if settings.pod_name and settings.pod_namespace:  # in a pod: label it while it leads
        mark = PodMark(api, settings.pod_namespace, settings.pod_name)
        mark.set(False)  # a label left by this pod's previous run (a restarted container)
    return Elector(api, namespace, settings.leader_election_lease, identity, timing,
                   on_change=lambda leading: metrics.leader.set(int(leading)),
                   on_lost=_exit_at_once, mark=mark)  # fmt: skip


def _exit_at_once(reason: str) -> None:
    """A leader that lost its Lease stops everything now, mid-step if need be, as
    controller-runtime does: another replica may take the Lease over once its duration has
    passed, and whatever this one was doing is then redone from the status, as after a crash."""
    log.critical("leadership lost (%s): exiting", reason)
    logging.shutdown()
    os._exit(1)


NO_CLUSTER = """\
turnout-operator: no Kubernetes cluster to talk to. It looked for:
  - an in-cluster service account (KUBERNETES_SERVICE_HOST and {token}): {incluster}
  - a kubeconfig: {kubeconfig}
Run it in a pod with a service account, or point it at a cluster: set KUBECONFIG to a kubeconfig
file (or write ~/.kube/config), e.g. `kind export kubeconfig` or `kubectl config view --raw`.
"""


def _load_cluster_config(config: Any) -> bool | None:
    """Load the in-cluster config, or else the kubeconfig: True in a cluster, False outside it,
    None (after saying what was looked for and how to fix it) when neither is there."""
    try:
        config.load_incluster_config()
        return True
    except config.ConfigException as exc:
        incluster = str(exc)
    try:
        config.load_kube_config()
        return False
    except (config.ConfigException, OSError) as exc:
        where = os.environ.get("KUBECONFIG") or "~/.kube/config (KUBECONFIG is not set)"
        token = config.incluster_config.SERVICE_TOKEN_FILENAME
        sys.stderr.write(
            NO_CLUSTER.format(token=token, incluster=incluster, kubeconfig=f"{where}: {exc}")
        )
        return None


if __name__ == "__main__":
    sys.exit(main())
