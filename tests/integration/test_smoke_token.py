"""The smoke test's request on the in-cluster path (`TURNOUT_OPERATOR_SMOKE_VIA=direct`): the
operator posts to `http://<preview>.<namespace>.svc/invocations` with the token in
`X-Turnout-Token`, the header it uses through the API server's service proxy too
(tests/real/test_smoke_auth.py runs that path against a real API server).

There is no cluster DNS here: the operator's HTTP client is pointed at a local server as its HTTP
proxy, so the request arrives there exactly as the operator built it, absolute URL included.
"""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest
from kubernetes import client

from turnout_operator.domain.observed import SmokeResult
from turnout_operator.kube import Kube

Seen = list[tuple[str, str | None, str | None, bytes]]


@pytest.fixture
def preview(monkeypatch: pytest.MonkeyPatch) -> Iterator[Seen]:
    """A preview that requires the token `s3cret`; what it received, request by request."""
    seen: Seen = []

    class Preview(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            token = self.headers.get("X-Turnout-Token")
            seen.append((self.path, token, self.headers.get("Authorization"), body))
            ok = token == "s3cret"
            answer = b'{"predictions": [151.0]}' if ok else b'{"error_code": "UNAUTHENTICATED"}'
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Preview)
    Thread(target=server.serve_forever, daemon=True).start()
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
    yield seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("s3cret", SmokeResult("3", True, "input example answered with predictions")),
        (None, SmokeResult("3", False, 'smoke test got HTTP 401: {"error_code": "UNAUTHENTICATED"}')),
    ],
)  # fmt: skip
def test_in_cluster_the_smoke_test_sends_the_token_in_x_turnout_token(
    preview: Seen, token: str | None, expected: SmokeResult
) -> None:
    with client.ApiClient() as api:
        result = Kube(api).smoke("ml", "diabetes-preview", "3", b'{"inputs": [[1.0]]}',
                                 direct=True, timeout=10, token=token)  # fmt: skip
    assert result == expected
    assert preview == [
        ("http://diabetes-preview.ml.svc/invocations", token, None, b'{"inputs": [[1.0]]}')
    ]
