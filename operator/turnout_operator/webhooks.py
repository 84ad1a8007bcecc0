"""The operator's HTTPS endpoint for MLflow's registry webhooks: `POST /webhooks/mlflow`.

It runs on kopf's event loop (aiohttp, kopf's own HTTP library), so a delivery wakes the
ModelDeployments' daemons directly. It only reads the request, the secret and the clock, asks
domain/webhooks.py what the delivery means, counts the answer and hands the registered model's name
to `on_model`. It never reconciles: a delivery only makes ModelDeployments ask the registry now
rather than at their next poll, so a lost delivery costs one poll interval and a forged one
nothing.

MLflow posts only to `https` URLs (MLFLOW_WEBHOOK_ALLOWED_SCHEMES), so the endpoint serves TLS
with a certificate and key read from files (a `kubernetes.io/tls` Secret, as cert-manager
writes it); both, and the HMAC secret, are read again when the files change (a renewal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from turnout_operator.domain import webhooks as W
from turnout_operator.settings import OperatorSettings

log = logging.getLogger("turnout_operator.webhooks")
PATH = "/webhooks/mlflow"
MAX_BODY = 1 << 20  # MLflow's registry payloads are a few hundred bytes
RELOAD_SECONDS = 30.0  # how often the certificate and secret files are checked for a change


class WebhookConfigError(Exception):
    """The endpoint cannot start: a file is missing or unreadable (the message says which)."""


class WebhookReceiver:
    def __init__(
        self, settings: OperatorSettings, registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.settings, self.clock = settings, clock
        self.deliveries = Counter(
            "turnout_operator_webhook_deliveries",
            "Registry webhook deliveries, by result: accepted (a registered model's event), "
            "ignored (signed, of no registered model) or the reason it was refused.",
            ["result"],
            registry=registry,
        )
        for result in W.RESULTS:
            self.deliveries.labels(result)
        self.seen = W.DeliveryIds(settings.webhook_max_age_seconds, settings.webhook_delivery_ids)
        self.files = [Path(settings.webhook_cert_file), Path(settings.webhook_key_file),
                      Path(settings.webhook_secret_file)]  # fmt: skip
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.secret = b""
        self._stamps: list[float] = []
        self.load()
        self._runner: web.AppRunner | None = None
        self._reloader: asyncio.Task[None] | None = None
        self.on_model: Callable[[str], list[tuple[str, str]]] = lambda model: []

    def load(self) -> None:
        """Read the certificate, its key and the secret (again, when a file changed)."""
        cert, key, secret = self.files
        try:
            stamps = [os.stat(f).st_mtime for f in self.files]
            self.tls.load_cert_chain(cert, key)
            value = secret.read_bytes().strip()
        except (OSError, ssl.SSLError) as exc:
            raise WebhookConfigError(f"webhook endpoint: {exc}") from exc
        if not value:
            raise WebhookConfigError(f"webhook endpoint: the secret file {secret} is empty")
        self.secret, self._stamps = value, stamps

    def reload_if_changed(self) -> None:
        try:
            changed = [os.stat(f).st_mtime for f in self.files] != self._stamps
            if changed:
                self.load()
                log.info("webhook endpoint: certificate and secret read again")
        except (OSError, WebhookConfigError) as exc:  # keep serving with what was read before
            log.warning("webhook endpoint: keeping the previous certificate and secret: %s", exc)

    async def start(self, on_model: Callable[[str], list[tuple[str, str]]]) -> None:
        self.on_model = on_model
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(PATH, self.deliver)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.webhook_address, self.settings.webhook_port,
                           ssl_context=self.tls)  # fmt: skip
        await site.start()
        self._reloader = asyncio.create_task(self._reload_periodically())
        log.info("webhook endpoint on https://%s:%d%s", self.settings.webhook_address,
                 self.settings.webhook_port, PATH)  # fmt: skip

    async def stop(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader
        if self._runner is not None:
            await self._runner.cleanup()

    async def _reload_periodically(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_SECONDS)
            self.reload_if_changed()

    async def deliver(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(W.Refused(W.TOO_LARGE, f"the body is over {MAX_BODY} bytes"))
        verdict = W.verify(self.secret, request.headers, body, self.clock(), self.seen)
        if isinstance(verdict, W.Refused):
            return self._refuse(verdict)
        self.deliveries.labels(verdict.result).inc()
        affected = self.on_model(verdict.model) if verdict.model is not None else []
        log.info("webhook %s %s of %s: resolving %s", verdict.entity, verdict.action,
                 verdict.model, [f"{ns}/{name}" for ns, name in affected] or "none")  # fmt: skip
        return web.json_response({
            "result": verdict.result, "model": verdict.model,
            "modelDeployments": [f"{ns}/{name}" for ns, name in affected],
        })  # fmt: skip

    def _refuse(self, refused: W.Refused) -> web.Response:
        self.deliveries.labels(refused.reason).inc()
        log.warning("webhook delivery refused (%s): %s", refused.reason, refused.message)
        return web.json_response(
            {"result": refused.reason, "message": refused.message}, status=refused.code
        )
