"""Helpers every test layer shares: one polling helper with a deadline, tool look-up, free ports."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")
IN_CI = os.environ.get("CI") == "true"


def wait_until(
    probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
        except AssertionError:
            raise  # the probe saw something that will not get better (a process died)
        except Exception as exc:  # the thing polled is not up yet
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}: {last_error!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_tool(name: str, *candidates: str) -> str:
    """Path of an external program; skips without it locally, fails in CI (nothing may skip)."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (candidate if os.access(candidate, os.X_OK) else None)
        if found:
            return found
    message = f"{name} is not installed (run `make tools`)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)
