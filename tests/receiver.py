"""A notification receiver for tests: a real HTTP server on 127.0.0.1 that records every POST and
answers as told (a status per request in turn, then 200; or holds every request unanswered)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    content_type: str
    body: bytes
    answered: int  # the status it was answered with
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, port: int = 0, answers: Iterable[int] = (), hang: bool = False) -> None:
        """`answers`: the status of the first requests, in turn (200 after them); `hang`: never
        answer (until stopped)."""
        self.received: list[Received] = []
        self._answers = list(answers)
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._hang = hang
        self._posts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver._posts += 1
                if receiver._hang:
                    receiver._release.wait(30)
                    return
                with receiver._lock:
                    status = receiver._answers.pop(0) if receiver._answers else 200
                    receiver.received.append(
                        Received(
                            self.headers.get("Content-Type", ""),
                            body,
                            status,
                            {k.lower(): v for k, v in self.headers.items()},
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def server_requests(self) -> int:
        """POSTs that reached it, answered or not."""
        with self._lock:
            return self._posts

    def delivered(self) -> list[Received]:
        """What it took (answered with a 2xx)."""
        with self._lock:
            return [r for r in self.received if 200 <= r.answered < 300]
