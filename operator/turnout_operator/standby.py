"""A standby replica, until it leads: it answers the liveness probe (on the URL kopf serves it
on once this replica leads, so the pod's probes stay the same) and stops on SIGTERM or SIGINT.
It runs no kopf, watches nothing and writes nothing; /metrics (turnout_operator_leader 0) is
served by the caller throughout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from urllib.parse import urlparse

from aiohttp import web

log = logging.getLogger("turnout_operator")
POLL_SECONDS = 0.2  # how often the standby looks whether the election thread made it leader


def wait_until_elected(elected: threading.Event, liveness: str | None) -> bool:
    """Block until `elected` is set (True) or the process is asked to stop (False)."""
    log.info("standby: waiting for the lease")
    return asyncio.run(_standby(elected, liveness))


async def _standby(elected: threading.Event, liveness: str | None) -> bool:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = await _serve_liveness(liveness) if liveness else None
    try:
        while not elected.is_set() and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if runner is not None:
            await runner.cleanup()  # kopf binds the same address next
    return elected.is_set() and not stop.is_set()


async def _serve_liveness(url: str) -> web.AppRunner:
    parsed = urlparse(url)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"leader": False})

    app = web.Application()
    app.router.add_get(parsed.path or "/", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parsed.hostname or "0.0.0.0", parsed.port or 80).start()
    return runner
