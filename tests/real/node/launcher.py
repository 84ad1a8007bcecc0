"""Inside a container's own mount and UTS namespaces (the agent starts it as `nsenter
--net=/run/netns/<pod> unshare --mount --uts --propagation private python -I launcher.py SPEC`),
lay the container's file system out and exec its command, so the command keeps this pid, the one
the agent tracks and signals.

What the container sees, without a change to the host's file system:
- a tmpfs on /run (the host's /run, its network namespaces and locks, is not the pod's);
- each volume at its mountPath, bind-mounted (read-only where the mount says so). Where the path
  exists it is mounted over; where it does not, it is made in the volume that holds its nearest
  existing ancestor, if one does (as runc makes mount points), else that ancestor gets an overlay
  (lowerdir the ancestor itself, upper and work dirs on a tmpfs of this namespace) and the path is
  made in that overlay only. When that ancestor is `/`, the container gets a root of its own: an
  overlay of `/` with every mount below `/` bind-mounted into it, and the command is chrooted
  there. The volumes are bound from the host's paths before that, so containers of one pod share
  their emptyDirs;
- `workingDir` made the same way when it is missing, and the termination message file (an
  overlay of /dev, with /dev's own mounts bound back into it, holds /dev/termination-log);
- the "image": the paths the agent names (its Python, the checkout that holds the installed
  packages) bound back over any volume that covers them, in depth order with the volumes, so an
  emptyDir at /tmp does not hide a checkout under /tmp (only the mount point is made in the
  volume). Sources are opened before anything is mounted and bound through /proc/self/fd, so a
  volume whose host path lies under another volume's mountPath is still found.

Standard library only: this runs before anything else in the container, and `-I` keeps the
agent's environment out of it. Never forks: exec is its last act.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    def raw(value: str | None) -> bytes | None:
        return None if value is None else value.encode()

    if _libc.mount(raw(source), raw(target), raw(fstype), flags, raw(data)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {source} on {target} ({fstype}, {data}): {os.strerror(error)}")


class Layout:
    def __init__(self, scratch: str) -> None:
        self.scratch = scratch  # a directory of the pod's state: this namespace's tmpfs goes there
        self.root = "/"
        self.owned: set[int] = set()  # devices of file systems private to this container
        self.volumes: list[str] = []  # where volumes are mounted, as paths here
        self.overlays = 0
        os.makedirs("/run", exist_ok=True)
        self.tmpfs("/run")
        os.makedirs(scratch, exist_ok=True)
        self.tmpfs(scratch)
        # by descriptor from here: a volume may later cover the scratch directory's path
        self.base = pinned(scratch)

    def tmpfs(self, target: str) -> None:
        mount("tmpfs", target, "tmpfs", 0, "mode=755")
        self.owned.add(os.stat(target).st_dev)

    def resolve(self, path: str) -> str:
        """`path` of the container's view as a path here: symlinks followed inside the root."""
        parts = [p for p in path.split("/") if p]
        current, hops = self.root, 0
        while parts:
            candidate = os.path.join(current, parts.pop(0))
            if os.path.islink(candidate):
                hops += 1
                if hops > 40:
                    raise OSError(f"too many levels of symbolic links in {path}")
                link = os.readlink(candidate)
                parts = [p for p in link.split("/") if p] + parts
                if link.startswith("/"):
                    current = self.root
                continue
            current = candidate
        return current

    def nearest(self, path: str) -> str:
        while not os.path.lexists(path):
            path = os.path.dirname(path)
        return path

    def needs_root(self, path: str) -> bool:
        ancestor = self.nearest(self.resolve(path))
        return ancestor == "/" and os.stat("/").st_dev not in self.owned

    def own_root(self) -> None:
        """An overlay of `/` with every mount below `/` bound into it; chrooted into at the end."""
        new_root = self._overlay("/")
        with open("/proc/self/mountinfo") as handle:
            mountinfo = [line.split() for line in handle]
        root_id = [fields[0] for fields in mountinfo if fields[4] == "/"][-1]
        for fields in mountinfo:
            point = fields[4]
            ours = point == "/" or point.startswith(self.scratch)
            if fields[1] == root_id and not ours and os.path.isdir(point):
                mount(point, new_root + point, None, MS_BIND | MS_REC, None)
        self.root = new_root

    def _overlay(self, lower: str) -> str:
        """An overlay of directory `lower` (writes go to this namespace's tmpfs); its mount point."""
        self.overlays += 1
        base = os.path.join(self.base, f"overlay{self.overlays}")
        upper, work = os.path.join(base, "upper"), os.path.join(base, "work")
        os.makedirs(upper)
        os.makedirs(work)
        target = os.path.join(base, "root") if lower == "/" else lower
        os.makedirs(target, exist_ok=True)
        mount("overlay", target, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")
        self.owned.add(os.stat(target).st_dev)
        return target

    def _overlay_keeping_mounts(self, lower: str) -> None:
        """An overlay of `lower` with the file systems mounted below it bound back in (/dev's
        pts, shm and mqueue under an overlay of /dev, made for /dev/termination-log)."""
        prefix = lower.rstrip("/") + "/"
        with open("/proc/self/mountinfo") as handle:
            points = sorted({fields[4] for fields in (line.split() for line in handle)
                             if fields[4].startswith(prefix)}, key=lambda p: p.count("/"))  # fmt: skip
        tops = [p for i, p in enumerate(points)
                if not any(p.startswith(q + "/") for q in points[:i])]  # fmt: skip
        kept = [(point, pinned(point)) for point in tops if os.path.isdir(point)]
        self._overlay(lower)
        for point, source in kept:
            mount(source, point, None, MS_BIND | MS_REC, None)

    def make(self, path: str, *, is_file: bool) -> str:
        """The container's `path` here, made (as a directory, or an empty file) if missing."""
        target = self.resolve(path)
        if os.path.lexists(target):
            return target
        ancestor = self.nearest(target)
        in_volume = any(ancestor == v or ancestor.startswith(v + "/") for v in self.volumes)
        if not in_volume and os.stat(ancestor).st_dev not in self.owned:
            self._overlay_keeping_mounts(ancestor)  # else made in the volume itself, as runc does
        os.makedirs(target if not is_file else os.path.dirname(target), exist_ok=True)
        if is_file:
            open(target, "a").close()
        return target


def pinned(path: str) -> str:
    """A path naming what `path` names now, whatever is mounted over `path` later."""
    return f"/proc/self/fd/{os.open(path, os.O_PATH)}"


def main(spec_path: str) -> None:
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the container dies with its agent
    with open(spec_path) as handle:
        spec = json.load(handle)
    socket.sethostname(spec["hostname"])
    volumes = [{**m, "source": pinned(m["source"]), "is_dir": os.path.isdir(m["source"])}
               for m in spec["mounts"]]  # fmt: skip
    image = [{"source": pinned(path), "target": path, "read_only": False, "is_dir": True,
              "image": True} for path in spec["image"]]  # fmt: skip
    layout = Layout(spec["scratch"])
    targets = [m["target"] for m in spec["mounts"]] + [spec["cwd"]]
    if any(layout.needs_root(path) for path in targets):
        layout.own_root()
    for item in sorted(volumes + image, key=lambda m: m["target"].rstrip("/").count("/")):
        if item.get("image") and same_file(item["source"], layout.resolve(item["target"])):
            continue  # not covered by a volume
        source = item["source"]
        target = layout.make(item["target"], is_file=not item["is_dir"])
        mount(source, target, None, MS_BIND | MS_REC, None)
        if item["read_only"]:
            mount(source, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
        if not item.get("image"):
            layout.volumes.append(target)
    cwd = layout.make(spec["cwd"], is_file=False)
    if layout.root != "/":
        os.chroot(layout.root)
        cwd = "/" + os.path.relpath(cwd, layout.root).lstrip(".")
    os.chdir(cwd)
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except OSError as exc:
        print(f'exec: "{argv[0]}": {exc.strerror}', file=sys.stderr, flush=True)
        os._exit(128)


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    main(sys.argv[1])
