"""What a container's spec means once resolved, shared by both places that run pods as local
processes: the emulator's `process` behaviour (tests/kube/processes.py, tests/kube/volumes.py) and
the node agent of the real control plane (tests/real/node).

- the environment as the kubelet builds it (`pkg/kubelet/kubelet_pods.go` `makeEnvironmentVariables`):
  `envFrom` first (each Secret or ConfigMap key, with the source's `prefix`), then `env` in order,
  each `value` expanded against what is defined so far, `$(VAR)` as
  `third_party/forked/golang/expansion` expands it (`$$` is a literal `$`, an unknown variable stays
  as written);
- the files of a Secret or ConfigMap volume source (`pkg/volume/util` `MakePayload`): every key a
  file, or only the `items` at their `path`, with the item's `mode`, else the source's mode;
- a finished run's termination message, from its file or, in its stead, its output
  (`pkg/kubelet/kuberuntime`).

Secret and ConfigMap objects come from a `Lookup` (the emulator's store, or the API server), so
nothing here does I/O of its own. Errors carry the kubelet's messages.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Obj | None]  # (kind: "secrets" | "configmaps", namespace, name)
DEFAULT_MODE = 0o644
# What the kubelet reads of a termination message file, and of a failed run's output in its stead
MESSAGE_BYTES, LOG_LINES, LOG_BYTES = 4096, 80, 2048
_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


class ConfigError(Exception):
    """The container cannot be created yet (the kubelet's `CreateContainerConfigError`)."""


class MountError(Exception):
    """A volume cannot be set up: the kubelet's FailedMount (the pod stays ContainerCreating)."""


def expand(value: str, env: Mapping[str, str]) -> str:
    """`$(VAR)` references replaced by their values, as the kubelet expands command, args and env."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return _REFERENCE.sub(one, value)


def _what(kind: str) -> str:
    return "secret" if kind == "secrets" else "configmap"


def _decoded(kind: str, obj: Obj) -> dict[str, bytes]:
    data = {}
    for key, value in (obj.get("data") or {}).items():
        data[key] = base64.b64decode(value) if kind == "secrets" else str(value).encode()
    for key, value in (obj.get("binaryData") or {}).items():
        data[key] = base64.b64decode(value)
    return data


def key_ref(kind: str, ref: Obj, namespace: str, lookup: Lookup) -> str | None:
    """The value of a `secretKeyRef` / `configMapKeyRef`; None when optional and absent."""
    obj = lookup(kind, namespace, ref["name"])
    if obj is None:
        if ref.get("optional"):
            return None
        raise ConfigError(f'{_what(kind)} "{ref["name"]}" not found')
    data = _decoded(kind, obj)
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        kind_name = "Secret" if kind == "secrets" else "ConfigMap"
        raise ConfigError(
            f"couldn't find key {ref['key']} in {kind_name} {namespace}/{ref['name']}"
        )
    return data[ref["key"]].decode()


def env_from(container: Obj, namespace: str, lookup: Lookup) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        kind, ref = ("secrets", source["secretRef"]) if "secretRef" in source else (
            "configmaps", source.get("configMapRef") or {})  # fmt: skip
        obj = lookup(kind, namespace, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{_what(kind)} "{ref.get("name")}" not found')
        for key, value in _decoded(kind, obj).items():
            env[source.get("prefix", "") + key] = value.decode()
    return env


def container_env(
    container: Obj,
    namespace: str,
    lookup: Lookup,
    fields: Mapping[str, str],
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's own variables (what `env`/`envFrom` define), in the kubelet's order.

    `fields`: the values `fieldRef.fieldPath` may name (`metadata.name`, `status.podIP`,
    `metadata.labels['app']`, ...); `base`: variables defined before the container's own (the
    kubelet's service variables, KUBERNETES_SERVICE_HOST...), which `$(VAR)` may name too and which
    the result includes."""
    env = {**(base or {}), **env_from(container, namespace, lookup)}
    for item in container.get("env") or []:
        source = item.get("valueFrom")
        value: str | None
        if source is None:
            value = expand(str(item.get("value", "")), env)
        elif "secretKeyRef" in source:
            value = key_ref("secrets", source["secretKeyRef"], namespace, lookup)
        elif "configMapKeyRef" in source:
            value = key_ref("configmaps", source["configMapKeyRef"], namespace, lookup)
        elif "fieldRef" in source:
            value = fields.get(source["fieldRef"].get("fieldPath", ""), "")
        else:
            raise ConfigError(f"unsupported valueFrom for {item['name']}: {sorted(source)}")
        if value is not None:
            env[item["name"]] = value
    return env


def source_files(
    kind: str, source: Obj, name: str, volume: str, namespace: str, lookup: Lookup,
    mode: int | None = None,
) -> dict[str, tuple[bytes, int]]:  # fmt: skip
    """File path -> (content, mode) of a Secret or ConfigMap volume, or of such a source of a
    projected volume: `name` is the object's name, `mode` the mode its files get unless an item
    sets one (the source's `defaultMode` when None)."""
    obj = lookup(kind, namespace, name)
    optional = bool(source.get("optional"))
    if obj is None and not optional:
        raise MountError(
            f'MountVolume.SetUp failed for volume "{volume}" : {kind} "{name}" not found'
        )
    data = _decoded(kind, obj or {})
    mode = int(source.get("defaultMode", DEFAULT_MODE)) if mode is None else mode
    items = source.get("items") or []
    if not items:
        return {key: (content, mode) for key, content in data.items()}
    files = {}
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            missing = "references non-existent secret key" if kind == "secrets" else (
                "configmap references non-existent config key")  # fmt: skip
            raise MountError(f'MountVolume.SetUp failed for volume "{volume}" : {missing}: '
                             f"{item['key']}")  # fmt: skip
        files[item["path"]] = (data[item["key"]], int(item.get("mode", mode)))
    return files


def termination_message(said: bytes, code: int, fallback: bool, output: Callable[[], bytes]) -> str:
    """The message a run that ended with `code` leaves in its container's status: what it wrote to
    its termination message file (`said`; at most 4 KiB), or, with FallbackToLogsOnError
    (`fallback`) when a failed run wrote nothing there, the last 80 lines of its `output` (at most
    2 KiB; read only then)."""
    said = said[:MESSAGE_BYTES]
    if not said and code != 0 and fallback:
        said = b"".join(output().splitlines(keepends=True)[-LOG_LINES:])[-LOG_BYTES:]
    return said.decode(errors="replace")
