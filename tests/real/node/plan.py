"""How to run a pod's container here, decided from the pod's spec: its environment, its command
line, the files of its volumes and where they are mounted. Pure: Secrets, ConfigMaps and
ServiceAccount tokens come from callbacks (the agent asks the API server with the node's
credentials), and nothing is written; the runtime (`runtime.py`) writes the files and the launcher
(`launcher.py`) mounts them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.podspec import (
    DEFAULT_MODE,
    ConfigError,
    Lookup,
    MountError,
    container_env,
    expand,
    source_files,
)

Obj = dict[str, Any]
Token = Callable[[str | None, int], str]  # (audience, expirationSeconds) -> a bound token
Files = dict[str, tuple[bytes, int]]  # path in the volume -> (content, mode)
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


class NoCommand(Exception):
    """The container has no `command`: there is no runtime here to run its image."""


@dataclass(frozen=True)
class Mount:
    source: str  # a path on the host (a volume's directory, or a file or directory in it)
    target: str  # the container's mountPath
    read_only: bool


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    mounts: list[Mount]
    hostname: str

    def as_dict(self) -> Obj:
        return {"argv": self.argv, "env": self.env, "cwd": self.cwd, "hostname": self.hostname,
                "mounts": [m.__dict__ for m in self.mounts]}  # fmt: skip


def pod_fields(pod: Obj, pod_ip: str, host_ip: str) -> dict[str, str]:
    """What `fieldRef.fieldPath` may name in env (the downward API), as the kubelet resolves it."""
    meta, spec = pod["metadata"], pod["spec"]
    fields = {
        "metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"], "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip, "status.podIPs": pod_ip,
        "status.hostIP": host_ip, "status.hostIPs": host_ip,
        "metadata.labels": _format_map(meta.get("labels") or {}),
        "metadata.annotations": _format_map(meta.get("annotations") or {}),
    }  # fmt: skip
    for kind in ("labels", "annotations"):
        for key, value in (meta.get(kind) or {}).items():
            fields[f"metadata.{kind}['{key}']"] = value
    return fields


def _format_map(values: Mapping[str, str]) -> str:
    """A whole labels/annotations map as a downward API file holds it: `key="value"` a line."""
    return "\n".join(f"{key}={json.dumps(values[key])}" for key in sorted(values))


def service_env(host: str, port: int) -> dict[str, str]:
    """The `kubernetes` Service's variables (the kubelet's service links), pointing where the node
    agent forwards to the API server."""
    url = f"tcp://{host}:{port}"
    return {
        "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port), "KUBERNETES_PORT": url,
        f"KUBERNETES_PORT_{port}_TCP": url, f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": str(port), f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
    }  # fmt: skip


def volume_files(
    volume: Obj, namespace: str, lookup: Lookup, token: Token, fields: Mapping[str, str]
) -> Files | None:
    """The files of a secret, configMap, downwardAPI or projected volume; None for a volume that
    is a plain directory (emptyDir); raises MountError for a type this node cannot provide."""
    name = volume["name"]
    if "emptyDir" in volume:
        return None
    if "secret" in volume:
        source = volume["secret"]
        return source_files(
            "secrets", source, source.get("secretName", ""), name, namespace, lookup
        )
    if "configMap" in volume:
        source = volume["configMap"]
        return source_files("configmaps", source, source.get("name", ""), name, namespace, lookup)
    if "downwardAPI" in volume:
        source = volume["downwardAPI"]
        return _downward(source, int(source.get("defaultMode", DEFAULT_MODE)), fields)
    if "projected" in volume:
        return _projected(volume, namespace, lookup, token, fields)
    raise MountError(f'MountVolume.SetUp failed for volume "{name}" : this node provides emptyDir, '
                     f"hostPath, secret, configMap, downwardAPI and projected volumes only")  # fmt: skip


def _downward(source: Obj, mode: int, fields: Mapping[str, str]) -> Files:
    files = {}
    for item in source.get("items") or []:
        if "fieldRef" not in item:
            raise MountError(f"downwardAPI item {item['path']}: only fieldRef is supported")
        value = fields.get(item["fieldRef"]["fieldPath"], "")
        files[item["path"]] = (value.encode(), int(item.get("mode", mode)))
    return files


def _projected(
    volume: Obj, namespace: str, lookup: Lookup, token: Token, fields: Mapping[str, str]
) -> Files:
    spec = volume["projected"]
    mode = int(spec.get("defaultMode", DEFAULT_MODE))
    files: Files = {}
    for source in spec.get("sources") or []:
        if "secret" in source or "configMap" in source:
            kind = "secrets" if "secret" in source else "configmaps"
            item = source.get("secret") or source.get("configMap") or {}
            files.update(source_files(kind, item, item.get("name", ""), volume["name"], namespace,
                                      lookup, mode))  # fmt: skip
        elif "downwardAPI" in source:
            files.update(_downward(source["downwardAPI"], mode, fields))
        elif "serviceAccountToken" in source:
            request = source["serviceAccountToken"]
            value = token(request.get("audience"), int(request.get("expirationSeconds", 3600)))
            files[request["path"]] = (value.encode(), mode)
        else:
            raise MountError(f'MountVolume.SetUp failed for volume "{volume["name"]}" : '
                             f"unsupported projected source {sorted(source)}")  # fmt: skip
    return files


def mounts(
    pod: Obj, container: Obj, volume_dir: Callable[[str], Path],
    managed: Mapping[str, Path] | None = None,
) -> list[Mount]:  # fmt: skip
    """The container's volumeMounts as host source -> mountPath (`subPath` inside the volume;
    a hostPath volume's source is that host path), then the files the node manages for the pod
    (`managed`: mountPath -> host file, /etc/hosts and /etc/resolv.conf) where no volumeMount
    takes that path, as the kubelet mounts its etc-hosts."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    found = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes[mount["name"]]
        root = (
            Path(volume["hostPath"]["path"]) if "hostPath" in volume else volume_dir(mount["name"])
        )
        source = root / mount["subPath"] if mount.get("subPath") else root
        found.append(Mount(str(source), mount["mountPath"], bool(mount.get("readOnly"))))
    taken = {m.target for m in found}
    found += [Mount(str(source), target, False)
              for target, source in (managed or {}).items() if target not in taken]  # fmt: skip
    return found


def launch(
    pod: Obj,
    container: Obj,
    lookup: Lookup,
    fields: Mapping[str, str],
    base_env: Mapping[str, str],
    volume_dir: Callable[[str], Path],
    managed: Mapping[str, Path] | None = None,
) -> Launch:
    """The container's command line, environment, working directory and mounts; raises ConfigError
    (a missing Secret/ConfigMap or key) or NoCommand.

    `base_env`: what the image would give (PATH, HOME) and the service variables; the container's
    own `env`/`envFrom` override it. `managed`: as `mounts` takes it."""
    if not container.get("command"):
        raise NoCommand(
            f"container {container['name']} has no command: this node runs a container's command "
            f"and args as a process and cannot run its image {container.get('image', '')!r}"
        )
    env = container_env(container, pod["metadata"]["namespace"], lookup, fields, base_env)
    argv = [
        expand(str(arg), env) for arg in [*container["command"], *(container.get("args") or [])]
    ]
    return Launch(argv, env, container.get("workingDir") or "/",
                  mounts(pod, container, volume_dir, managed), pod["metadata"]["name"][:63])  # fmt: skip


__all__ = ["ConfigError", "Launch", "Mount", "MountError", "NoCommand"]
