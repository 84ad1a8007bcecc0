"""What a container sees, as in a cluster: its volumes' files at their mountPaths (Secret,
ConfigMap with subPath, downwardAPI, emptyDir shared with an init container, emptyDir in memory,
the ServiceAccount's projected token, CA and namespace), read-only where the mount says so, its
workingDir, its environment from every source, and the host's file system untouched. A reference
to a Secret that does not exist yet is the kubelet's CreateContainerConfigError (env) or a wait in
ContainerCreating with a FailedMount event (volume), until it appears."""

from __future__ import annotations

import base64
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import wait_until
from tests.real.conftest import RunningNode

pytestmark = pytest.mark.real

SEE = textwrap.dedent("""
    import json, os, stat
    def look(path):
        if os.path.isdir(path):
            return {name: look(os.path.join(path, name)) for name in sorted(os.listdir(path))
                    if not name.startswith("..")}
        mode = stat.S_IMODE(os.stat(path).st_mode)
        try:
            with open(path, "a"):
                writable = True
        except OSError:
            writable = False
        return [open(path).read(), oct(mode), writable]
    seen = {path: look(path) for path in ["/etc/app/creds", "/etc/app/settings.yaml", "/etc/podinfo",
            "/scratch", "/var/run/secrets/kubernetes.io/serviceaccount"]}
    seen["cwd"] = os.getcwd()
    seen["memory"] = [line.split()[2] for line in open("/proc/self/mounts") if line.split()[1] == "/cache"]
    seen["hostname"] = os.uname().nodename
    seen["env"] = {k: v for k, v in os.environ.items() if k.startswith(("E_", "DB_", "KUBERNETES_SERVICE_"))}
    seen["path"] = os.environ["PATH"]
    print(json.dumps(seen), flush=True)
""")  # fmt: skip
HOST_PATHS = ("/etc/app", "/etc/podinfo", "/scratch", "/cache", "/srv/app",
              "/var/run/secrets/kubernetes.io")  # fmt: skip


def secret(name: str, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "stringData": data}


def finished(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod | None:
    pod = core.read_namespaced_pod(name, namespace)
    return pod if pod.status.phase in ("Succeeded", "Failed") else None


def test_volumes_workdir_and_env_as_the_container_sees_them_and_the_host_unchanged(
    core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    assert not any(os.path.lexists(p) for p in HOST_PATHS)
    core.create_namespaced_secret(namespace, secret("creds", user="ada", password="s3cret"))
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"},
                                                  "data": {"app.yaml": "mode: fast\n", "level": "3"}})  # fmt: skip
    container = {
        "name": "see", "image": "python", "command": [sys.executable, "-c", SEE], "workingDir": "/srv/app",
        "volumeMounts": [
            {"name": "creds", "mountPath": "/etc/app/creds", "readOnly": True},
            {"name": "settings", "mountPath": "/etc/app/settings.yaml", "subPath": "app.yaml"},
            {"name": "podinfo", "mountPath": "/etc/podinfo"},
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "cache", "mountPath": "/cache"},
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "E_CM_"}, {"secretRef": {"name": "creds"}, "prefix": "DB_"}],
        "env": [
            {"name": "E_USER", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}},
            {"name": "E_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
            {"name": "E_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "E_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "E_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "E_LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "E_NOTE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
            {"name": "E_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "E_SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "E_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "E_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "E_GREETING", "value": "$(E_USER)@$(E_POD) $$(E_USER) $(E_UNKNOWN)"},
        ],
    }  # fmt: skip
    pod = {
        "metadata": {"name": "see", "labels": {"app": "files"}, "annotations": {"note": "hello"}},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "prepare", "image": "busybox",
                                "command": ["sh", "-c", "echo made by $(WHO) > /scratch/from-init"],
                                "env": [{"name": "WHO", "value": "init"}],
                                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
            "containers": [container],
            "volumes": [
                {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o440,
                                             "items": [{"key": "user", "path": "user"},
                                                       {"key": "password", "path": "nested/password", "mode": 0o400}]}},
                {"name": "settings", "configMap": {"name": "settings"}},
                {"name": "podinfo", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "cache", "emptyDir": {"medium": "Memory"}},
            ],
        },
    }  # fmt: skip
    core.create_namespaced_pod(namespace, pod)
    done = wait_until(lambda: finished(core, namespace, "see"), timeout=90, interval=0.2,
                      what="the pod to run to completion")  # fmt: skip
    log = (node_agent.pod_dir(done) / "see.log").read_text()
    assert done.status.phase == "Succeeded", log
    (init,) = done.status.init_container_statuses
    assert (init.name, init.state.terminated.exit_code, init.state.terminated.reason) == (
        "prepare",
        0,
        "Completed",
    )
    seen = json.loads(log.splitlines()[-1])
    account = seen.pop("/var/run/secrets/kubernetes.io/serviceaccount")
    assert seen == {
        "/etc/app/creds": {"nested": {"password": ["s3cret", "0o400", False]}, "user": ["ada", "0o440", False]},
        "/etc/app/settings.yaml": ["mode: fast\n", "0o644", True],
        "/etc/podinfo": {"labels": ['app="files"', "0o644", True], "name": ["see", "0o644", True]},
        "/scratch": {"from-init": ["made by init\n", "0o644", True]},
        "cwd": "/srv/app",
        "memory": ["tmpfs"],
        "hostname": "see",
        "env": {
            "E_CM_app.yaml": "mode: fast\n", "E_CM_level": "3", "DB_user": "ada", "DB_password": "s3cret",
            "E_USER": "ada", "E_LEVEL": "3", "E_POD": "see", "E_NS": namespace, "E_UID": done.metadata.uid,
            "E_LABEL": "files", "E_NOTE": "hello", "E_NODE": node_agent.name, "E_SA": "default",
            "E_POD_IP": done.status.pod_ip, "E_HOST_IP": node_agent.host_ip,
            "E_GREETING": "ada@see $(E_USER) $(E_UNKNOWN)",
            "KUBERNETES_SERVICE_HOST": node_agent.host_ip,
            "KUBERNETES_SERVICE_PORT": str(node_agent.agent.info["apiPort"]),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(node_agent.agent.info["apiPort"]),
        },
        "path": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
    }  # fmt: skip
    # the ServiceAccount admission plugin's projected volume: a token bound to this pod, the CA
    assert sorted(account) == ["ca.crt", "namespace", "token"]
    assert account["namespace"][:2] == [namespace, "0o644"]
    assert (
        account["ca.crt"][0]
        == core.read_namespaced_config_map("kube-root-ca.crt", namespace).data["ca.crt"]
    )
    claims = json.loads(base64.urlsafe_b64decode(account["token"][0].split(".")[1] + "=="))
    assert claims["kubernetes.io"]["pod"] == {"name": "see", "uid": done.metadata.uid}
    assert claims["sub"] == f"system:serviceaccount:{namespace}:default"
    assert not any(os.path.lexists(p) for p in HOST_PATHS)


COVERED = textwrap.dedent("""
    import json, os, sys, turnout_serving
    for path in sys.argv[1:]:
        with open(os.path.join(path, "written"), "w") as handle:
            handle.write("by the container")
    print(json.dumps({"package": turnout_serving.__file__, "secret": open("/etc/covered/k").read()}),
          flush=True)
""")  # fmt: skip


def test_volumes_over_the_checkout_and_the_pods_own_files_hide_neither(
    core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    """An emptyDir at /tmp (and over the directories holding the checkout and Python) keeps the
    "image" visible, as a container image is under every volume: the checkout may live under /tmp
    (CI clones there), and so may the pod's own volumes on the host (pytest's temporary files)."""
    checkout = Path(__file__).resolve().parents[2]
    covered = sorted({"/tmp", str(checkout.parent), str(Path(sys.base_prefix).resolve().parent)})
    core.create_namespaced_secret(namespace, secret("covered", k="found"))
    pod = {"metadata": {"name": "covered"}, "spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "python", "command": [sys.executable, "-c", COVERED, *covered],
                        "volumeMounts": [{"name": f"cover{i}", "mountPath": path} for i, path in enumerate(covered)]
                                        + [{"name": "s", "mountPath": "/etc/covered"}]}],
        "volumes": [{"name": f"cover{i}", "emptyDir": {}} for i, _ in enumerate(covered)]
                   + [{"name": "s", "secret": {"secretName": "covered"}}]}}  # fmt: skip
    core.create_namespaced_pod(namespace, pod)
    done = wait_until(lambda: finished(core, namespace, "covered"), timeout=90, interval=0.2,
                      what="the pod to run to completion")  # fmt: skip
    log = (node_agent.pod_dir(done) / "c.log").read_text()
    assert done.status.phase == "Succeeded", log
    seen = json.loads(log.splitlines()[-1])
    assert seen["package"] == str(checkout / "serving" / "turnout_serving" / "__init__.py")
    assert seen["secret"] == "found"
    # each covered directory is its emptyDir: what the container wrote there is in the volume
    # (where the checkout's mount point was made), and not on the host's path
    for i, path in enumerate(covered):
        volume = node_agent.pod_dir(done) / "volumes" / f"cover{i}"
        assert (volume / "written").read_text() == "by the container", path
        assert not (Path(path) / "written").exists()


def test_a_missing_secret_holds_the_container_until_it_appears(
    core: client.CoreV1Api, namespace: str, node_agent: RunningNode
) -> None:
    container = {"name": "wait", "image": "busybox", "command": ["sleep", "3600"]}
    core.create_namespaced_pod(namespace, {"metadata": {"name": "env"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{**container, "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}]}]}})  # fmt: skip
    core.create_namespaced_pod(namespace, {"metadata": {"name": "volume"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{**container, "volumeMounts": [{"name": "v", "mountPath": "/etc/later"}]}],
        "volumes": [{"name": "v", "secret": {"secretName": "later"}}]}})  # fmt: skip

    def state(name: str) -> tuple[str, str | None, str | None]:
        pod = core.read_namespaced_pod(name, namespace)
        (status,) = pod.status.container_statuses or [None]
        waiting = status.state.waiting if status else None
        return pod.status.phase, waiting and waiting.reason, waiting and waiting.message

    want = ("Pending", "CreateContainerConfigError", 'secret "later" not found')
    wait_until(lambda: state("env") == want, timeout=60, what=f"pod env to show {want}")

    def failed_mount() -> list[str]:
        events = core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=volume"
        ).items
        return sorted({e.message for e in events if e.reason == "FailedMount"})

    messages = wait_until(failed_mount, timeout=60, what="a FailedMount event")
    assert messages == ['MountVolume.SetUp failed for volume "v" : secrets "later" not found']
    # the event and the status are written apart (as the kubelet's are): wait for the status
    waiting = ("Pending", "ContainerCreating", None)
    wait_until(lambda: state("volume") == waiting, timeout=30, what=f"pod volume to show {waiting}")

    core.create_namespaced_secret(namespace, secret("later", k="v"))
    for name in ("env", "volume"):
        wait_until(lambda n=name: state(n) == ("Running", None, None), timeout=60,
                   what=f"pod {name} to run once the Secret exists")  # fmt: skip
