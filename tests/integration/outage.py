"""A TCP forwarder in front of a server that a test can cut and restore: an outage of the MLflow
registry as one ModelDeployment sees it, while the rest of the session keeps using the registry.

Cutting it closes the listening socket and every open connection, so new requests are refused at
once (as with a stopped server) and kept-alive connections fail, as they would.

It listens on 127.0.0.1 unless told another address of this host: the bridge address of
tests/real/netns.py makes a server on the host's loopback reachable from a pod's network namespace.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.conftest import free_port

CHUNK = 65536


class Forwarder:
    def __init__(self, target_port: int, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.port = port or free_port()
        self.target_port = target_port
        self.host = host
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Forwarder:
        self.up()
        return self

    def __exit__(self, *_: object) -> None:
        self.down()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        listener.settimeout(0.1)  # the accept loop notices a cut within this long
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and drop the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            doomed, self._sockets = self._sockets, set()
        for sock in [*doomed, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(CHUNK):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
