"""An HTTP server that answers every request with what it received: method, path, headers (in
the order and spelling they arrived) and body, as JSON, and which server answered (`server`: the
address and port it listens on). The service proxy tests run it inside a
pod's network namespace to see exactly what the API server forwards.

    python tests/real/echo.py HOST PORT
"""

from __future__ import annotations

import json
import socketserver
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        payload = json.dumps({
            "method": self.command, "path": self.path,
            "headers": [[name, value] for name, value in self.headers.items()], "body": body,
            "server": f"{self.server.server_address[0]}:{self.server.server_address[1]}",
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:  # one line per request
        sys.stderr.write(f"{self.command} {self.path}\n")


class Server(ThreadingHTTPServer):
    def server_bind(self) -> None:
        # HTTPServer.server_bind looks its address up in DNS (getfqdn), which in a pod's network
        # namespace has no resolver to ask and waits for the timeouts before it listens.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = (
            str(self.server_address[0]),
            int(self.server_address[1]),
        )


if __name__ == "__main__":
    Server((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
