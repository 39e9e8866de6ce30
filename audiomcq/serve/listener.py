"""Where the server listens and how long a connection may take to send its headers.

kserve's ``ModelServer`` listens on ``0.0.0.0`` with no way to choose, and uvicorn (with httptools, its default
parser here) waits for a request's headers forever and without a size limit: a connection that opens and sends
nothing, or trickles a header line, holds a socket indefinitely, and a client can stream headers until memory runs
out. ``BoundedModelServer`` starts kserve's REST server on ``host`` with a protocol that bounds the headers:

- a request's line and headers must arrive within ``header_timeout_s`` of its first byte (or of the connection
  opening, for its first request); a late one gets a 408, a connection that sent nothing is just closed;
- they may take at most ``max_header_bytes``; past that the client gets a 431 and the connection is closed;
- between requests an idle connection is closed after ``keep_alive_s`` (uvicorn's own keep-alive timeout).

Bodies are bounded by ``audiomcq.serve.bounds.BodyLimit`` once the headers are in.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import kserve
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from audiomcq.errors import AudioMCQError
from audiomcq.serve import metrics
from audiomcq.serve.config import ServeConfig

log = logging.getLogger(__name__)


def _status(code: int, reason: str, message: str) -> bytes:
    """A complete response that closes the connection, written straight to the socket (no request to answer)."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class _HeaderBounds:
    """The header deadline and size limit, on top of uvicorn's protocol (``make_protocol`` sets the bounds)."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any
    client: Any

    def _reset(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._header_tail = b""
        self._header_started = False

    def _in_request(self) -> bool:
        """Whether a request's headers are complete and its response is not (its body is the middleware's)."""
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._reset()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._reset()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        # Between a response and the next request's headers, every byte counts towards those headers, so the rest
        # of a body answered without being read (a 404 to a large POST) closes the connection once it passes the
        # limit; its client already has its answer.
        if not self._in_request():
            self._arm()
            self._header_started = True
            if self._header_size(data) > self.max_header_bytes:
                message = f"the request line and headers are larger than {self.max_header_bytes} bytes"
                self._close("header_too_large", _status(431, "Request Header Fields Too Large", message))
                return
        super().data_received(data)  # type: ignore[misc]
        if self._in_request():
            self._reset()

    def _header_size(self, data: bytes) -> int:
        """The size of the request line and headers so far, up to their end when it is in ``data`` (what follows
        is the body); the few bytes before ``data`` are kept, so an end split between two reads is found."""
        window = self._header_tail + data
        ends = [i + len(mark) for mark in (b"\r\n\r\n", b"\n\n") if (i := window.find(mark)) >= 0]
        if ends:
            return self._header_bytes + min(ends) - len(self._header_tail)
        self._header_bytes += len(data)
        self._header_tail = window[-3:]
        return self._header_bytes

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._in_request() or self.transport.is_closing():
            return
        if not self._header_started:
            self._close("idle", b"")  # nothing was asked, so nothing is answered
            return
        message = f"the request headers did not arrive within {self.header_timeout_s:g} s"
        self._close("header_timeout", _status(408, "Request Timeout", message))

    def _close(self, reason: str, response: bytes) -> None:
        metrics.CLOSED.labels(reason=reason).inc()
        log.info("closed the connection from %s before its request: %s", _peer(self.client), reason)
        if response:
            self.transport.write(response)
        self.transport.close()
        self._reset()


def _peer(client: Any) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown peer"


def make_protocol(header_timeout_s: float, max_header_bytes: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools when installed, else h11) with the header bounds."""
    bounds = {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes}
    return type("BoundedHTTPProtocol", (_HeaderBounds, AutoHTTPProtocol), bounds)


class BoundedModelServer(kserve.ModelServer):
    """kserve's model server, REST only, listening on ``config.host`` with bounded headers and keep-alive."""

    def __init__(self, http_port: int, config: ServeConfig) -> None:
        super().__init__(http_port=http_port, enable_grpc=False, workers=1, timeout_keep_alive=config.keep_alive_s)
        self.settings = config

    def setup_event_loop(self) -> None:
        """``start`` builds the REST server's uvicorn settings, then sets up the loop before serving: the last
        moment to choose the address and the protocol."""
        rest = getattr(self, "_rest_server", None)
        if rest is None:  # a kserve that no longer builds it first: refuse rather than listen on 0.0.0.0 unbounded
            raise AudioMCQError("serve: kserve's REST server was not built before the event loop; cannot apply --host")
        uvicorn_config = rest.config
        uvicorn_config.host = self.settings.host
        uvicorn_config.timeout_keep_alive = self.settings.keep_alive_s
        uvicorn_config.h11_max_incomplete_event_size = self.settings.max_header_bytes
        uvicorn_config.http = make_protocol(self.settings.header_timeout_s, self.settings.max_header_bytes)
        log.info("listening on %s:%d", self.settings.host, self.http_port)
        super().setup_event_loop()
