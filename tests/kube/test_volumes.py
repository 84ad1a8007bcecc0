"""`process` pods see their Secret, ConfigMap and emptyDir volumes as the kubelet lays them out, at
per-pod directories that args, env values and `workingDir` are rewritten to; a missing Secret is
the kubelet's FailedMount while the container waits in ContainerCreating."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_until
from tests.kube.conftest import deployment
from tests.kube.emulator import KubeEmulator
from tests.kube.processes import _rewrite
from tests.kube.volumes import path_table

Obj = dict[str, Any]
# Records what the container sees (its env value and working directory) in the emptyDir, then
# serves /etc/turnout: every path and port below is the pod's, rewritten by the emulator.
SEE_AND_SERVE = (
    "import os, sys\n"
    "open('/etc/turnout/scratch/seen', 'w').write(os.environ['TURNOUT_AUTH_TOKEN_FILE'] + '\\n' + os.getcwd())\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'http.server', '8080', '--bind', '0.0.0.0',"
    " '--directory', '/etc/turnout'])\n"
)  # fmt: skip


def served(kube: KubeEmulator, **secret: Any) -> Obj:
    dep = deployment(
        "app", command=["python", "-c", SEE_AND_SERVE], workingDir="/srv/app",
        ports=[{"name": "http", "containerPort": 8080}],
        env=[{"name": "TURNOUT_AUTH_TOKEN_FILE", "value": "/etc/turnout/auth/tokens"}],
        volumeMounts=[{"name": "auth", "mountPath": "/etc/turnout/auth", "readOnly": True},
                      {"name": "config", "mountPath": "/etc/turnout/config"},
                      {"name": "settings", "mountPath": "/etc/turnout/settings.yaml", "subPath": "app.yaml"},
                      {"name": "scratch", "mountPath": "/etc/turnout/scratch"}],
    )  # fmt: skip
    dep["spec"]["template"]["spec"]["volumes"] = [
        {"name": "auth", "secret": {"secretName": "tokens", "items": [{"key": "tokens", "path": "tokens", "mode": 0o400}], **secret}},
        {"name": "config", "configMap": {"name": "config"}},
        {"name": "settings", "configMap": {"name": "config", "defaultMode": 0o600}},
        {"name": "scratch", "emptyDir": {}},
    ]  # fmt: skip
    kube.controller.behave("default", "app", "process")
    return kube.create(dep)


def container_status(kube: KubeEmulator) -> Obj | None:
    pods = kube.list("v1", "Pod", "default", labels="app=app")
    statuses = pods[0].get("status", {}).get("containerStatuses") if pods else None
    return statuses[0] if statuses else None


def test_secret_configmap_and_empty_dir_volumes(kube: KubeEmulator) -> None:
    """pkg/volume/secret, pkg/volume/configmap MakePayload: every key a file, or the `items` at their
    `path` with their `mode`, else `defaultMode` (0644 when unset: SetDefaults_SecretVolumeSource)."""
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tokens", "namespace": "default"},
                 "stringData": {"tokens": "s3cret\n", "unused": "x"}})  # fmt: skip
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "namespace": "default"},
                 "data": {"app.yaml": "color: green\n", "extra": "1"}})  # fmt: skip
    created = served(kube)
    volumes = created["spec"]["template"]["spec"]["volumes"]
    assert [v.get("secret", v.get("configMap", {})).get("defaultMode") for v in volumes] == [
        420,
        420,
        384,
        None,
    ]
    wait_until(lambda: kube.controller.endpoint("default", "app"), what="the process started")
    endpoint = kube.controller.endpoint("default", "app")
    with httpx.Client(trust_env=False, timeout=10) as http:
        wait_until(
            lambda: http.get(f"{endpoint}/scratch/seen").status_code == 200, what="seen written"
        )
        assert http.get(f"{endpoint}/auth/tokens").text == "s3cret\n"
        assert http.get(f"{endpoint}/auth/unused").status_code == 404  # only the items
        assert http.get(f"{endpoint}/config/extra").text == "1"
        assert http.get(f"{endpoint}/settings.yaml").text == "color: green\n"  # subPath
        token_file, cwd = http.get(f"{endpoint}/scratch/seen").text.split("\n")
    pod = kube.list("v1", "Pod", "default", labels="app=app")[0]["metadata"]["name"]
    pod_dir = kube.controller.log_dir / f"default.{pod}"
    view = pod_dir / "fs"
    assert (token_file, cwd) == (str(view / "etc/turnout/auth/tokens"), str(view / "srv/app"))
    modes = {path: stat.S_IMODE((pod_dir / "volumes" / path).stat().st_mode)
             for path in ("auth/tokens", "config/app.yaml", "settings/app.yaml")}  # fmt: skip
    assert modes == {"auth/tokens": 0o400, "config/app.yaml": 0o644, "settings/app.yaml": 0o600}


@pytest.mark.parametrize("optional", [False, True])
def test_a_missing_secret_is_a_failed_mount(kube: KubeEmulator, optional: bool) -> None:
    """kubelet: secretVolumeMounter.SetUpAt fails on a missing Secret unless `optional`; the operation
    executor reports `MountVolume.SetUp failed for volume "<name>" : <error>` as a FailedMount Warning
    and the container stays waiting in ContainerCreating until the Secret exists."""
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "namespace": "default"},
                 "data": {"app.yaml": "color: green\n"}})  # fmt: skip
    served(kube, optional=optional)
    if optional:
        wait_until(lambda: kube.controller.endpoint("default", "app"), what="the process started")
        return
    waiting = wait_until(
        lambda: (s := container_status(kube)) and s["state"].get("waiting"), what="waiting"
    )
    assert waiting == {"reason": "ContainerCreating"}
    assert kube.list("v1", "Pod", "default", labels="app=app")[0]["status"]["phase"] == "Pending"
    events = wait_until(
        lambda: [e for e in kube.events("default") if e.get("reason") == "FailedMount"]
    )
    assert [(e["type"], e["involvedObject"]["kind"], e["source"]["component"], e["message"]) for e in events] == [
        ("Warning", "Pod", "kubelet", 'MountVolume.SetUp failed for volume "auth" : secrets "tokens" not found')]  # fmt: skip
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tokens", "namespace": "default"},
                 "stringData": {"tokens": "t"}})  # fmt: skip
    wait_until(
        lambda: kube.controller.endpoint("default", "app"), what="the process started once mounted"
    )


def test_a_path_is_rewritten_once_even_when_the_pods_directory_lies_under_a_mount_path(
    tmp_path: Path,
) -> None:
    """A turnout-serve pod mounts an emptyDir at /tmp and its tokens at /etc/turnout/auth, and
    the pod's directory on this machine lies under /tmp: the token file's path must become the
    pod's view of it, not that path with /tmp rewritten a second time."""
    pod_dir = Path("/tmp") / "pods" / "default.web-abc"
    mounts = path_table({"/etc/turnout/auth": pod_dir / "fs/etc/turnout/auth",
                         "/tmp": pod_dir / "fs/tmp"}, pod_dir)  # fmt: skip
    rewrite = lambda value: _rewrite(value, {8080: 41234}, mounts)  # noqa: E731
    assert rewrite("/etc/turnout/auth/tokens") == f"{pod_dir}/fs/etc/turnout/auth/tokens"
    assert rewrite("/tmp/cache:/etc/turnout") == f"{pod_dir}/fs/tmp/cache:{pod_dir}/fs/etc/turnout"
    assert rewrite("--port=8080 /etc/turnouts /tmpfs") == "--port=41234 /etc/turnouts /tmpfs"
