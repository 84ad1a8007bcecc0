"""A TCP forwarder in front of a server that a test can cut and restore: an outage of the MLflow
registry as one ModelDeployment sees it, while the rest of the session keeps using the registry.

Cutting it closes the listening socket and every open connection, so new requests are refused at
once (as with a stopped server) and kept-alive connections fail, as they would.

It listens on 127.0.0.1 unless told another address of this host: the bridge address of
tests/real/netns.py makes a server on the host's loopback reachable from a pod's network namespace.
Given `upstreams` (a callable naming the servers to try, in order, for each new connection), it
goes to the first that accepts: the node agent's Service proxy (tests/real/node/proxy.py) hands
it a rotation of a Service's ready endpoints. Each direction is half-closed when its sender is
done, and a connection's sockets are closed once both directions are.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence

from tests.conftest import free_port

CHUNK = 65536
log = logging.getLogger("forwarder")
CONNECT_TIMEOUT = 2.0
Upstreams = Callable[[], Sequence[tuple[str, int]]]


class Forwarder:
    def __init__(
        self, target_port: int = 0, host: str = "127.0.0.1", port: int | None = None,
        upstreams: Upstreams | None = None,
    ) -> None:  # fmt: skip
        self.port = port or free_port()
        self.target_port = target_port
        self.host = host
        self.upstreams = upstreams or (lambda: [("127.0.0.1", self.target_port)])
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
                if self._listener is not listener:  # cut: the listener is closed
                    return
                # a connection that failed before it was taken (reset, out of descriptors): the
                # listener still serves the others
                log.warning("accepting on %s:%d", self.host, self.port, exc_info=True)
                time.sleep(0.05)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        """Join `client` to the first of the upstreams that accepts a connection; with none, the
        client sees its connection closed."""
        for address in self.upstreams():
            try:
                upstream = socket.create_connection(address, timeout=CONNECT_TIMEOUT)
            except OSError:
                continue
            upstream.settimeout(None)
            with self._lock:
                cut = self._listener is None
                if not cut:
                    self._sockets |= {client, upstream}
            if cut:
                upstream.close()
                break
            done = threading.Barrier(2, action=lambda u=upstream: self._close(client, u))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, done), daemon=True).start()
            return
        client.close()

    def _pump(self, src: socket.socket, dst: socket.socket, done: threading.Barrier) -> None:
        try:
            while data := src.recv(CHUNK):
                dst.sendall(data)
            how = socket.SHUT_WR  # the sender is done: pass its half-close on
        except OSError:  # reset: end the other direction too
            how = socket.SHUT_RDWR
        for sock in (dst, src) if how == socket.SHUT_RDWR else (dst,):
            with contextlib.suppress(OSError):
                sock.shutdown(how)
        with contextlib.suppress(threading.BrokenBarrierError):
            done.wait()

    def _close(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._sockets -= set(sockets)
        for sock in sockets:
            sock.close()
