"""The node agent's decisions, pure: the pod's phase and conditions from its containers' states
(the kubelet's getPhase and status generators), the CrashLoopBackOff back-off, the restart
decision, probe result counting, the environment and volume files planned from a pod spec, and
what the Services make of the Service proxy and of a pod's /etc/hosts (with the in-place rewrite
that keeps a bind-mounted file's inode)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.podspec import ConfigError, MountError
from tests.real.node import plan, runtime, services
from tests.real.node.lifecycle import BackOff, ProbeSpec, ProbeState, should_restart
from tests.real.node.status import PodView, Record, Terminated, conditions, phase, pod_status

Obj = dict[str, Any]


def waiting(name: str = "c") -> Record:
    return Record(name, "img")


def running(name: str = "c", ready: bool = False) -> Record:
    record = Record(name, "img")
    record.run("2026-01-01T00:00:00Z", "process://1")
    record.ready = ready
    return record


def exited(code: int, name: str = "c") -> Record:
    record = Record(name, "img")
    record.end(Terminated(code, "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"))
    return record


def backing_off(code: int, name: str = "c") -> Record:
    record = Record(name, "img")
    record.last = Terminated(code, "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z")
    record.wait("CrashLoopBackOff", "back-off 10s")
    return record


@pytest.mark.parametrize(
    ("policy", "init", "containers", "expected"),
    [
        ("Always", [], [waiting()], "Pending"),
        ("Always", [], [running()], "Running"),
        ("Always", [], [running("a"), waiting("b")], "Pending"),
        ("Always", [], [exited(0)], "Running"),
        ("Always", [], [backing_off(1)], "Running"),
        ("OnFailure", [], [exited(0)], "Succeeded"),
        ("OnFailure", [], [backing_off(2)], "Running"),
        ("Never", [], [exited(0)], "Succeeded"),
        ("Never", [], [exited(3)], "Failed"),
        ("Never", [], [exited(0, "a"), exited(1, "b")], "Failed"),
        ("Never", [], [exited(0, "a"), running("b")], "Running"),
        ("Always", [waiting("i")], [waiting()], "Pending"),
        ("Always", [running("i")], [waiting()], "Pending"),
        ("Always", [exited(0, "i")], [running()], "Running"),
        ("Always", [backing_off(1, "i")], [waiting()], "Pending"),
        ("OnFailure", [exited(1, "i")], [waiting()], "Pending"),
        ("Never", [exited(1, "i")], [waiting()], "Failed"),
    ],
)
def test_phase_follows_the_kubelets_get_phase(
    policy: str, init: list[Record], containers: list[Record], expected: str
) -> None:
    assert phase(PodView(policy, init, containers, sandbox=True)) == expected


@pytest.mark.parametrize(
    ("containers", "expected"),
    [
        ([running("a", True), running("b", True)], "Failed"),
        ([exited(0, "a"), exited(0, "b")], "Succeeded"),
        ([exited(0, "a"), exited(143, "b")], "Failed"),
    ],
)
def test_a_deleted_pod_ends_in_a_terminal_phase_once_its_containers_stopped(
    containers: list[Record], expected: str
) -> None:
    stopped = [r for r in containers if r.running_since is None]
    view = PodView("Always", [], containers, sandbox=True, terminal=True)
    assert phase(view) == (expected if len(stopped) == len(containers) else "Running")


def test_conditions_name_the_unready_and_incomplete_containers() -> None:
    view = PodView(
        "Always", [exited(0, "init")], [running("a", True), running("b"), waiting("c")], True
    )
    assert conditions(view, phase(view)) == {
        "PodReadyToStartContainers": ("True", "", ""),
        "Initialized": ("True", "", ""),
        "ContainersReady": ("False", "ContainersNotReady", "containers with unready status: [b c]"),
        "Ready": ("False", "ContainersNotReady", "containers with unready status: [b c]"),
    }
    view = PodView("Always", [exited(0, "a"), running("b")], [waiting()], True)
    assert conditions(view, phase(view))["Initialized"] == (
        "False", "ContainersNotInitialized", "containers with incomplete status: [b]")  # fmt: skip
    view = PodView("OnFailure", [], [exited(0)], True)
    assert conditions(view, phase(view)) == {
        "PodReadyToStartContainers": ("True", "", ""), "Initialized": ("True", "PodCompleted", ""),
        "ContainersReady": ("False", "PodCompleted", ""), "Ready": ("False", "PodCompleted", ""),
    }  # fmt: skip


def test_a_transition_time_moves_only_when_the_status_changes() -> None:
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"}
    view = PodView("Always", [], [running("a")], sandbox=True)
    first = pod_status(view, [scheduled], "t1")
    assert first["conditions"][0] == scheduled
    assert {c["type"]: (c["status"], c["lastTransitionTime"]) for c in first["conditions"]} == {
        "PodScheduled": ("True", "t0"), "PodReadyToStartContainers": ("True", "t1"),
        "Initialized": ("True", "t1"), "ContainersReady": ("False", "t1"), "Ready": ("False", "t1"),
    }  # fmt: skip
    view.containers[0].ready = True
    second = pod_status(view, first["conditions"], "t2")
    assert {c["type"]: (c["status"], c["lastTransitionTime"], c.get("reason")) for c in second["conditions"]} == {
        "PodScheduled": ("True", "t0", None), "PodReadyToStartContainers": ("True", "t1", None),
        "Initialized": ("True", "t1", None), "ContainersReady": ("True", "t2", None),
        "Ready": ("True", "t2", None),
    }  # fmt: skip


def test_container_statuses_carry_state_and_last_state() -> None:
    record = backing_off(137)
    record.last = Terminated(137, "s", "f", signal=9, container_id="process://7")
    record.restarts = 2
    assert record.as_status() == {
        "name": "c", "image": "img", "imageID": "", "ready": False, "started": False,
        "restartCount": 2,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
        "lastState": {"terminated": {"exitCode": 137, "reason": "Error", "signal": 9,
                                     "startedAt": "s", "finishedAt": "f",
                                     "containerID": "process://7"}},
    }  # fmt: skip
    assert exited(0).as_status()["state"]["terminated"]["reason"] == "Completed"


@pytest.mark.parametrize(
    ("policy", "code", "expected"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 0, False),
        ("Never", 1, False),
    ],
)
def test_restart_policy(policy: str, code: int, expected: bool) -> None:
    assert should_restart(policy, code) is expected


def test_back_off_starts_at_once_then_doubles_from_10_s_to_the_maximum() -> None:
    backoff = BackOff()
    delays = [backoff.delay(started=t, finished=t + 1) for t in range(0, 80, 10)]
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]
    assert backoff.delay(started=1000, finished=1599) == 300  # ran 599 s: no reset
    assert backoff.delay(started=2000, finished=2600) == 0  # ran 10 min: starts afresh
    assert backoff.delay(started=3000, finished=3001) == 10
    lowered = BackOff(maximum=20)
    assert [lowered.delay(0, 1) for _ in range(5)] == [0, 10, 20, 20, 20]


def results(state: ProbeState, outcomes: str) -> list[bool | None]:
    return [state.record(o == "+", now=float(i)) for i, o in enumerate(outcomes)]


def test_probe_results_change_after_their_thresholds() -> None:
    readiness = ProbeState.begin(
        ProbeSpec("readiness", success_threshold=2, failure_threshold=3), 0
    )
    assert readiness.result is False  # not ready until it succeeds
    assert results(readiness, "+-++--+---") == [
        False,
        False,
        False,
        True,
        True,
        True,
        True,
        True,
        True,
        False,
    ]
    liveness = ProbeState.begin(ProbeSpec("liveness", failure_threshold=2), 0)
    assert liveness.result is True
    assert results(liveness, "-+--") == [True, True, True, False]
    startup = ProbeState.begin(ProbeSpec("startup", failure_threshold=3), 0)
    assert startup.result is None
    assert results(startup, "--+") == [None, None, True]


def test_probes_wait_their_initial_delay_then_their_period() -> None:
    spec = ProbeSpec.of(
        "readiness", {"initialDelaySeconds": 5, "periodSeconds": 2, "timeoutSeconds": 3}
    )
    assert (
        spec.initial_delay,
        spec.period,
        spec.timeout,
        spec.success_threshold,
        spec.failure_threshold,
    ) == (5, 2, 3, 1, 3)
    state = ProbeState.begin(spec, started=100)
    assert [state.due(t) for t in (100, 104.9, 105)] == [False, False, True]
    state.record(True, now=105)
    assert [state.due(t) for t in (106.9, 107)] == [False, True]


SECRETS: dict[tuple[str, str], Obj] = {
    ("secrets", "creds"): {"data": {"user": base64.b64encode(b"ada").decode(),
                                    "pass": base64.b64encode(b"s3cret").decode()}},
    ("configmaps", "settings"): {"data": {"mode": "fast", "level": "3"}},
    ("configmaps", "kube-root-ca.crt"): {"data": {"ca.crt": "PEM"}},
}  # fmt: skip


def lookup(kind: str, namespace: str, name: str) -> Obj | None:
    assert namespace == "ns"
    return SECRETS.get((kind, name))


POD: Obj = {
    "metadata": {"name": "web-1", "namespace": "ns", "uid": "u-1",
                 "labels": {"app": "web", "tier": "a b"}, "annotations": {"note": "x"}},
    "spec": {"nodeName": "node-a", "serviceAccountName": "runner", "containers": []},
}  # fmt: skip


def test_the_environment_as_the_kubelet_builds_it() -> None:
    container = {
        "name": "c", "command": ["sh", "-c", "echo $(GREETING) $$(NOT) $(MISSING)"], "args": ["$(MODE)"],
        "envFrom": [{"configMapRef": {"name": "settings"}}, {"secretRef": {"name": "creds"}, "prefix": "DB_"}],
        "env": [
            {"name": "USER_NAME", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
            {"name": "GREETING", "value": "hi-$(USER_NAME)-$(mode)-$(MODE)"},
            {"name": "ABSENT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
            *({"name": f"F_{i}", "valueFrom": {"fieldRef": {"fieldPath": path}}} for i, path in enumerate([
                "metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels['tier']",
                "metadata.annotations['note']", "spec.nodeName", "spec.serviceAccountName",
                "status.podIP", "status.hostIP"])),
        ],
    }  # fmt: skip
    fields = plan.pod_fields(POD, "10.244.0.2", "10.244.0.1")
    base = {"PATH": "/bin", **plan.service_env("10.244.0.1", 4443)}
    launch = plan.launch(POD, container, lookup, fields, base, lambda v: Path("/v") / v)
    assert launch.argv == ["sh", "-c", "echo hi-ada-fast-$(MODE) $(NOT) $(MISSING)", "$(MODE)"]
    assert {k: v for k, v in launch.env.items() if not k.startswith("KUBERNETES_")} == {
        "PATH": "/bin", "mode": "fast", "level": "3", "DB_user": "ada", "DB_pass": "s3cret",
        "USER_NAME": "ada", "LEVEL": "3", "GREETING": "hi-ada-fast-$(MODE)",
        "F_0": "web-1", "F_1": "ns", "F_2": "u-1", "F_3": "a b", "F_4": "x", "F_5": "node-a",
        "F_6": "runner", "F_7": "10.244.0.2", "F_8": "10.244.0.1",
    }  # fmt: skip
    assert {k: v for k, v in launch.env.items() if k.startswith("KUBERNETES_SERVICE")} == {
        "KUBERNETES_SERVICE_HOST": "10.244.0.1", "KUBERNETES_SERVICE_PORT": "4443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "4443"}  # fmt: skip
    assert (launch.cwd, launch.hostname, launch.mounts) == ("/", "web-1", [])


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}],
            'secret "nope" not found',
        ),
        (
            [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope"}}}],
            "couldn't find key nope in ConfigMap ns/settings",
        ),
    ],
)
def test_a_missing_reference_is_the_kubelets_create_container_config_error(
    env: list[Obj], message: str
) -> None:
    container = {"name": "c", "command": ["true"], "env": env}
    with pytest.raises(ConfigError) as raised:
        plan.launch(POD, container, lookup, {}, {}, lambda v: Path(v))
    assert str(raised.value) == message


def test_a_container_without_command_cannot_run_here() -> None:
    with pytest.raises(plan.NoCommand, match=r"container c has no command: .* its image 'nginx'"):
        plan.launch(POD, {"name": "c", "image": "nginx"}, lookup, {}, {}, lambda v: Path(v))


def test_volume_files_of_every_kind_and_their_mounts() -> None:
    fields = plan.pod_fields(POD, "10.244.0.2", "10.244.0.1")
    tokens: list[tuple[str | None, int]] = []

    def token(audience: str | None, expiration: int) -> str:
        tokens.append((audience, expiration))
        return "tok"

    def files(volume: Obj) -> dict[str, tuple[bytes, int]] | None:
        return plan.volume_files(volume, "ns", lookup, token, fields)

    assert files({"name": "e", "emptyDir": {"medium": "Memory"}}) is None
    assert files({"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400,
                                          "items": [{"key": "user", "path": "u/name"}]}}) == {
        "u/name": (b"ada", 0o400)}  # fmt: skip
    assert files({"name": "c", "configMap": {"name": "settings"}}) == {
        "mode": (b"fast", 0o644), "level": (b"3", 0o644)}  # fmt: skip
    assert files({"name": "d", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600}]}}) == {
        "labels": (b'app="web"\ntier="a b"', 0o644), "name": (b"web-1", 0o600)}  # fmt: skip
    # what the ServiceAccount admission plugin injects
    projected = {"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}  # fmt: skip
    assert files(projected) == {
        "token": (b"tok", 420),
        "ca.crt": (b"PEM", 420),
        "namespace": (b"ns", 420),
    }
    assert tokens == [(None, 3607)]
    with pytest.raises(MountError, match='volume "s" : secrets "nope" not found'):
        files({"name": "s", "secret": {"secretName": "nope"}})
    with pytest.raises(MountError, match='volume "p" : this node provides emptyDir'):
        files({"name": "p", "persistentVolumeClaim": {"claimName": "x"}})

    pod = {**POD, "spec": {**POD["spec"], "volumes": [
        {"name": "s", "secret": {"secretName": "creds"}}, {"name": "h", "hostPath": {"path": "/srv/data"}}]}}  # fmt: skip
    container = {"volumeMounts": [
        {"name": "s", "mountPath": "/etc/creds", "readOnly": True},
        {"name": "s", "mountPath": "/etc/user", "subPath": "user"},
        {"name": "h", "mountPath": "/data"}]}  # fmt: skip
    assert plan.mounts(pod, container, lambda v: Path("/state/volumes") / v) == [
        plan.Mount("/state/volumes/s", "/etc/creds", True),
        plan.Mount("/state/volumes/s/user", "/etc/user", False),
        plan.Mount("/srv/data", "/data", False),
    ]


def endpoint(ip: str, ready: bool | None) -> Obj:
    return {"addresses": [ip], **({} if ready is None else {"conditions": {"ready": ready}})}


def test_the_proxy_routes_each_tcp_port_of_a_cluster_ip_to_the_ready_endpoints_of_that_port_name() -> (
    None
):
    def svc(ns: str, name: str, ip: str, ports: list[Obj], kind: str = "ClusterIP") -> Obj:
        return {"metadata": {"namespace": ns, "name": name},
                "spec": {"type": kind, "clusterIP": ip, "ports": ports}}  # fmt: skip

    def slice_(
        ns: str, service: str, endpoints: list[Obj], ports: list[Obj], family: str = "IPv4"
    ) -> Obj:
        return {"metadata": {"namespace": ns, "name": f"{service}-x",
                             "labels": {services.SERVICE_NAME: service}},
                "addressType": family, "endpoints": endpoints, "ports": ports}  # fmt: skip

    found = services.routes(
        [svc("n", "web", "10.96.0.10", [{"name": "http", "port": 80},
                                         {"name": "metrics", "port": 9090, "protocol": "TCP"},
                                         {"name": "dns", "port": 53, "protocol": "UDP"}]),
         svc("n", "headless", "None", [{"name": "http", "port": 80}]),
         svc("n", "outside", "", [{"port": 80}], kind="ExternalName"),
         svc("n", "empty", "10.96.0.11", [{"port": 8080}]),
         svc("m", "web", "10.96.0.12", [{"port": 80}])],
        [slice_("n", "web", [endpoint("10.244.0.3", True), endpoint("10.244.0.2", None),
                             endpoint("10.244.0.4", False)],
                [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100},
                 {"name": "dns", "port": 53, "protocol": "UDP"}]),
         slice_("n", "web", [endpoint("fd00::5", True)], [{"name": "http", "port": 8080}], "IPv6"),
         slice_("n", "empty", [], [{"port": 8080}]),  # an EndpointSlice may have no endpoints
         slice_("m", "web", [endpoint("10.244.0.9", True)], [{"name": "", "port": 8081}])],
    )  # fmt: skip
    assert found == {
        ("10.96.0.10", 80): [("10.244.0.2", 8080), ("10.244.0.3", 8080)],
        ("10.96.0.10", 9090): [("10.244.0.2", 9100), ("10.244.0.3", 9100)],
        ("10.96.0.11", 8080): [],
        ("10.96.0.12", 80): [("10.244.0.9", 8081)],
    }


def test_a_pods_hosts_file_names_itself_its_aliases_and_every_service_short_names_in_its_namespace() -> (
    None
):
    named = services.names([
        {"metadata": {"namespace": "shop", "name": "web"}, "spec": {"clusterIP": "10.96.3.10"}},
        {"metadata": {"namespace": "default", "name": "web"}, "spec": {"clusterIP": "10.96.3.11"}},
        {"metadata": {"namespace": "shop", "name": "pods"}, "spec": {"clusterIP": "None"}},
    ])  # fmt: skip
    assert named == [("default", "web", "10.96.3.11"), ("shop", "web", "10.96.3.10")]
    text = services.hosts_file("10.244.3.7", "web-7d9f", "shop", named,
                               [{"ip": "10.244.3.1", "hostnames": ["mlflow", "registry"]}])  # fmt: skip
    assert text == services.LOCAL_HOSTS + (
        "10.244.3.7\tweb-7d9f\n"
        "\n# Entries added by HostAliases.\n"
        "10.244.3.1\tmlflow\tregistry\n"
        "\n# Services (the node agent's stand-in for cluster DNS).\n"
        "10.96.3.11\tweb.default.svc.cluster.local web.default.svc web.default\n"
        "10.96.3.10\tweb.shop.svc.cluster.local web.shop.svc web.shop web\n"
    )
    assert services.resolv_conf("shop") == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 127.0.0.1\noptions ndots:5\n"
    )


def test_the_nodes_name_files_are_mounted_where_no_volume_mount_takes_their_path() -> None:
    managed = {"/etc/hosts": Path("/pod/etc-hosts"), "/etc/resolv.conf": Path("/pod/resolv.conf")}
    pod = {**POD, "spec": {**POD["spec"], "volumes": [{"name": "h", "emptyDir": {}}]}}
    mine = {"volumeMounts": [{"name": "h", "mountPath": "/etc/hosts", "subPath": "hosts"}]}
    assert plan.mounts(pod, mine, lambda v: Path("/v") / v, managed) == [
        plan.Mount("/v/h/hosts", "/etc/hosts", False),
        plan.Mount("/pod/resolv.conf", "/etc/resolv.conf", False),
    ]
    assert plan.mounts(pod, {}, lambda v: Path("/v") / v, managed) == [
        plan.Mount("/pod/etc-hosts", "/etc/hosts", False),
        plan.Mount("/pod/resolv.conf", "/etc/resolv.conf", False),
    ]


def test_a_rewrite_keeps_the_files_inode_and_pads_a_shorter_content_with_a_comment(
    tmp_path: Path,
) -> None:
    path = tmp_path / "etc-hosts"
    runtime.rewrite(path, "10.96.0.10\tweb.shop.svc\n10.96.0.11\tapi.shop.svc\n")
    inode = path.stat().st_ino
    runtime.rewrite(path, "10.96.0.11\tapi.shop.svc\n")
    assert path.stat().st_ino == inode
    assert path.read_text() == "10.96.0.11\tapi.shop.svc\n" + "#" * 23 + "\n"  # 48 bytes still
    runtime.rewrite(
        path, "10.96.0.12\tdb.shop.svc\n10.96.0.11\tapi.shop.svc\n10.96.0.13\tx.y.svc\n"
    )
    assert (path.stat().st_ino, path.read_text()) == (
        inode, "10.96.0.12\tdb.shop.svc\n10.96.0.11\tapi.shop.svc\n10.96.0.13\tx.y.svc\n")  # fmt: skip
