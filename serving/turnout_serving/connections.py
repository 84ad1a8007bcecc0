"""HTTP/1.1 connections with the bounds uvicorn leaves open, and a graceful close on shutdown.

uvicorn picks httptools when it is installed (it is, with `uvicorn[standard]`), else h11. What
each does on its own, and what this module adds to both:

- **Header size.** httptools accepts any size (a 16 MiB header was buffered whole); h11 stops at
  `h11_max_incomplete_event_size` but answers 400. Here the request line and headers are counted
  as they arrive and a request over `max_header_bytes` gets 431 Request Header Fields Too Large.
- **Time to send a request.** Neither bounds it: a client may open a connection and send nothing,
  or trickle headers forever. Here a silent new connection is closed after the keep-alive
  timeout, like an idle one, and headers not complete `read_timeout_seconds` after their first
  byte get 408 Request Timeout. (A body that never arrives is the app's: `http.read_body`.)
- **Shutdown.** On SIGTERM uvicorn closes idle keep-alive connections at once, resetting a
  request the client had already sent on one. Here an idle connection stays open until its
  keep-alive timeout, and every request arriving on any connection after SIGTERM is answered
  with `Connection: close`, so a client learns to go elsewhere from an answer, never a reset.

Both implementations' classes are subclassed through their documented extension point, the
`http` protocol class of `uvicorn.Config`; only attributes both share are touched.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from turnout_serving.settings import ServingSettings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

_END_OF_HEADERS = b"\r\n\r\n"
_CLOSE = (b"connection", b"close")
LINGER_SECONDS = 2.0  # after a refusal, how long what the client still sends is read and dropped


class _Bounded:
    """Mixed into uvicorn's HTTP protocol classes (see the module docstring)."""

    max_header_bytes = 64 * 1024
    read_timeout = 30.0

    # Provided by uvicorn's protocol classes.
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any
    timeout_keep_alive: int
    timeout_keep_alive_task: asyncio.TimerHandle | None
    timeout_keep_alive_handler: Any

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._in_headers = True  # reading a request line and headers (or waiting for one)
        self._header_bytes = 0
        self._tail = b""  # the last bytes seen, for a terminator split across reads
        self._header_deadline: asyncio.TimerHandle | None = None
        self._draining = False
        self._refused = False
        # uvicorn arms the keep-alive timer only after a response: a connection that never
        # sends a byte would otherwise be held forever.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: read and drop what the client still sends
        if self._in_headers and data:
            if self._header_bytes == 0:
                self._header_deadline = self.loop.call_later(self.read_timeout, self._too_slow)
            window = self._tail + data
            end = window.find(_END_OF_HEADERS)
            size = self._header_bytes + (len(data) if end < 0 else end - len(self._tail))
            if size > self.max_header_bytes:
                self._refuse(
                    431,
                    "Request Header Fields Too Large",
                    f"The request line and headers exceed {self.max_header_bytes} bytes "
                    "(max_header_bytes, TURNOUT_MAX_HEADER_BYTES).",
                )
                return
            if end < 0:
                self._header_bytes, self._tail = size, window[-3:]
            else:
                self._in_headers = False
                self._cancel_header_deadline()
        super().data_received(data)  # type: ignore[misc]
        if self._draining and self.cycle is not None and not self.cycle.response_complete:
            self._close_after(self.cycle)

    def on_response_complete(self) -> None:
        self._in_headers, self._header_bytes, self._tail = True, 0, b""
        super().on_response_complete()  # type: ignore[misc]

    def shutdown(self) -> None:
        """Called by uvicorn on SIGTERM for every open connection."""
        self._draining = True
        if self.cycle is None or self.cycle.response_complete:
            # Idle: a request may be on its way. Let it arrive and be answered with
            # `Connection: close`; the keep-alive timer closes the connection if none comes.
            if self.timeout_keep_alive_task is None and self._header_bytes == 0:
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )
        else:
            self._close_after(self.cycle)

    def _close_after(self, cycle: Any) -> None:
        """Answer this request with `Connection: close`, then close."""
        cycle.keep_alive = False  # httptools then sends the header itself

    def _too_slow(self) -> None:
        self._header_deadline = None
        self._refuse(
            408,
            "Request Timeout",
            f"The request headers were not received within {self.read_timeout:g} s "
            "(read_timeout_seconds, TURNOUT_READ_TIMEOUT_SECONDS).",
        )

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def eof_received(self) -> None:
        if self._refused:
            self.transport.close()

    def _refuse(self, status: int, reason: str, message: str) -> None:
        """Answer before the request is parsed (so outside the app), then close the way nginx's
        lingering close does: stop writing, and drop what the client still sends for a while.
        Closing at once with its data unread would make the kernel reset the connection, and
        the client, still sending, would never read the answer."""
        self._cancel_header_deadline()
        if self.transport.is_closing():
            return
        body = message.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason.encode(), len(body), body)
        )
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


class BoundedH11Protocol(_Bounded, H11Protocol):
    def _close_after(self, cycle: Any) -> None:
        # uvicorn's h11 cycle closes when keep_alive is off but does not say so in the answer;
        # it does add the header when the request asked for it, so the request asks for it.
        cycle.keep_alive = False
        if _CLOSE not in cycle.scope["headers"]:
            cycle.scope["headers"].append(_CLOSE)


if HttpToolsProtocol is not None:

    class BoundedHttpToolsProtocol(_Bounded, HttpToolsProtocol):
        pass


def protocol_class(settings: ServingSettings) -> type[asyncio.Protocol]:
    """The connection class for `settings.http`, carrying the settings' bounds."""
    use_h11 = settings.http == "h11" or (settings.http == "auto" and HttpToolsProtocol is None)
    if settings.http == "httptools" and HttpToolsProtocol is None:
        raise ValueError("http=httptools, but httptools is not installed")
    base: type[Any] = BoundedH11Protocol if use_h11 else BoundedHttpToolsProtocol
    return type(
        base.__name__,
        (base,),
        {"max_header_bytes": settings.max_header_bytes,
         "read_timeout": settings.read_timeout_seconds},
    )  # fmt: skip


def server_config(app: Any, settings: ServingSettings) -> uvicorn.Config:
    """uvicorn's configuration for one turnout-serve process."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",
        http=protocol_class(settings),
        # h11's own bound on an incomplete request line and headers: ours (431) acts first.
        h11_max_incomplete_event_size=settings.max_header_bytes + 1024,
        timeout_keep_alive=settings.keep_alive_seconds,
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=False,  # nothing here reads the client address; spare the rewrite
        timeout_graceful_shutdown=round(settings.graceful_shutdown_seconds) or None,
    )
