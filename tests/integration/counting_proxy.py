"""A counting HTTP proxy in front of a real MLflow tracking server: every request is forwarded
as is and recorded, so a test counts what MLflow itself was asked, from the server's side."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx

RESOLVE_BY_ALIAS = "/api/2.0/mlflow/registered-models/alias"


@dataclass
class CountingProxy:
    url: str
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, path with query)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def alias_lookups(self, model: str) -> int:
        """How many times MLflow was asked what an alias of `model` points at."""
        with self.lock:
            seen = list(self.seen)
        return sum(
            1 for method, path in seen
            if method == "GET" and urlparse(path).path == RESOLVE_BY_ALIAS
            and parse_qs(urlparse(path).query).get("name") == [model]
        )  # fmt: skip


@contextmanager
def counting_proxy(upstream_url: str) -> Iterator[CountingProxy]:
    upstream = httpx.Client(base_url=upstream_url, timeout=30)
    proxy = CountingProxy("")

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            with proxy.lock:
                proxy.seen.append((self.command, self.path))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            got = upstream.request(self.command, self.path, content=body, headers=headers)
            self.send_response(got.status_code)
            self.send_header("Content-Type", got.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(got.content)))
            self.end_headers()
            self.wfile.write(got.content)

        do_GET = do_POST = do_PATCH = do_DELETE = _forward

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        upstream.close()
