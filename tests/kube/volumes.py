"""A `process` pod's volumes: Secret, ConfigMap and emptyDir volumes made into per-pod directories.

A container's process runs on this machine, so a volume cannot appear at its `mountPath`: each mounted
volume becomes a directory under the pod's own directory, filled as the kubelet fills it
(`pkg/volume/secret/secret.go` and `pkg/volume/configmap/configmap.go` `MakePayload`: every key a file,
or only the `items` at their `path`; file modes from the item's `mode`, else `defaultMode`, which the
API server defaults to 0644), and `mount_table` says where each `mountPath` (with `subPath`, the
entry inside the volume) is on the host. `processes.py` rewrites every occurrence of a mount path in
the container's args, env values and `workingDir` to that host path, as it rewrites ports.

A volume that cannot be set up (a missing Secret or ConfigMap that is not `optional`, a missing key
named in `items`) is what the kubelet reports as a `FailedMount` Warning event,
`MountVolume.SetUp failed for volume "<name>" : <error>` (`operationexecutor` `GenerateError`), while
the container waits in `ContainerCreating`: `MountError` carries that message. Other volume types
are ignored (no directory). Files are plain files (no `..data` symlinks); `readOnly` is not enforced.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.podspec import Lookup, source_files

Obj = dict[str, Any]


def _payload(volume: Obj, namespace: str, lookup: Lookup) -> dict[str, tuple[bytes, int]] | None:
    """File name -> (content, mode) of a Secret or ConfigMap volume; None for other volume types."""
    if "secret" in volume:
        source = volume["secret"]
        return source_files("secrets", source, source.get("secretName", ""), volume["name"],
                            namespace, lookup)  # fmt: skip
    if "configMap" in volume:
        source = volume["configMap"]
        return source_files("configmaps", source, source.get("name", ""), volume["name"],
                            namespace, lookup)  # fmt: skip
    return None


def set_up(
    pod_spec: Obj, container: Obj, namespace: str, lookup: Lookup, pod_dir: Path
) -> dict[str, Path]:
    """Fill the directories of the volumes `container` mounts and lay the mounts out in the pod's
    file system view `<pod_dir>/fs` (symlinks to `<pod_dir>/volumes/<name>`, or to the `subPath` in
    it); returns mountPath -> its place in that view."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    table: dict[str, Path] = {}
    ready: set[str] = set()
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            continue
        host = pod_dir / "volumes" / volume["name"]
        if volume["name"] not in ready:
            files = _payload(volume, namespace, lookup)
            if files is None and "emptyDir" not in volume:
                continue  # a volume type the emulator does not provide
            if host.exists():
                shutil.rmtree(host)
            host.mkdir(parents=True)
            for relative, (content, mode) in (files or {}).items():
                target = host / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
                target.chmod(mode)
            ready.add(volume["name"])
        mount_path = mount["mountPath"].rstrip("/") or "/"
        seen = pod_dir / "fs" / mount_path.lstrip("/")
        seen.parent.mkdir(parents=True, exist_ok=True)
        if seen.is_symlink():
            seen.unlink()
        seen.symlink_to(host / mount["subPath"] if mount.get("subPath") else host)
        table[mount_path] = seen
    return table


def path_table(mounts: dict[str, Path], pod_dir: Path) -> dict[str, Path]:
    """What to rewrite: each mount path, and each folder above one that this machine lacks (so a
    container that lists `/etc/turnout` sees its mounts `/etc/turnout/auth`, ...), to its place in
    the pod's view; folders that exist here (`/etc`, `/tmp`) keep meaning this machine's."""
    table = dict(mounts)
    for mount_path in mounts:
        for parent in Path(mount_path).parents:
            if str(parent) != "/" and not parent.exists():
                table.setdefault(str(parent), pod_dir / "fs" / str(parent).lstrip("/"))
    return table
