"""The server's own Prometheus series, exposed on kserve's ``/metrics`` beside its ``request_*_seconds``.

Routes are labelled by their template (``/v1/models/{model_name}:predict``), never by the raw path, so a client
cannot grow the label set; paths that match no route share the label ``unmatched``. An error's ``kind`` says whose
fault it is: ``client`` for 4xx and for 501 (kserve's answer to a feature it does not offer, such as a route a
client made up), ``disconnect`` for a client that went away before its response was sent (counted with code
``499``), ``server`` for every other 5xx. Alerts page on ``server`` only, so no client can page anyone.

A client that goes away mid-request is noticed while its body is read or, once the body is in, by a watcher
waiting for the connection to close; its request is then cancelled, so the model does not compute an answer
nobody reads (questions still queued are dropped; a forward already running finishes). It is logged as one INFO
line, without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.requests import ClientDisconnect

log = logging.getLogger(__name__)
REQUEST_SECONDS = Histogram(
    "audiomcq_serve_request_seconds",
    "Wall time of one HTTP request, by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
REQUESTS = Counter("audiomcq_serve_requests", "HTTP requests, by route and status code", ["route", "code"])
ERRORS = Counter(
    "audiomcq_serve_errors",
    "Failed HTTP requests, by route and kind (client: 4xx and 501 Not Implemented, disconnect: the client went away "
    "first, server: other 5xx)",
    ["route", "kind"],
)
CLOSED = Counter(
    "audiomcq_serve_connections_closed",
    "Connections closed before a request's headers were complete, by reason (header_timeout, header_too_large, idle)",
    ["reason"],
)
AUDIO_SECONDS = Counter("audiomcq_serve_audio_seconds", "Seconds of audio in answered questions")
QUESTIONS = Counter("audiomcq_serve_questions", "Questions answered")
ANSWERS = Counter("audiomcq_serve_answers", "Answers by the position of the chosen choice (0 = first)", ["index"])
BATCH_SIZE = Histogram(
    "audiomcq_serve_batch_size", "Questions per model forward", buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)
DISCONNECTED = 499  # the code nginx logs for a client that closed the connection before the response
# Routes whose requests middleware may answer before routing (a refused body, a relabelled one): their templates.
TEMPLATES = (
    (re.compile(r"^/v1/models/[^/]+:predict$"), "/v1/models/{model_name}:predict"),
    (re.compile(r"^/v2/models/[^/]+/infer$"), "/v2/models/{model_name}/infer"),
    (re.compile(r"^/openai/v1/chat/completions$"), "/openai/v1/chat/completions"),
)


def record_answers(seconds: list[float], indices: list[int]) -> None:
    """Count the answered questions, their audio and the position of each answer."""
    QUESTIONS.inc(len(indices))
    AUDIO_SECONDS.inc(sum(seconds))
    for index in indices:
        ANSWERS.labels(index=str(index)).inc()


def route_label(scope: dict) -> str:
    """The route template that answered, or the template of a route answered by middleware; else ``unmatched``."""
    route = getattr(scope.get("route"), "path", None)
    if route:
        return route
    if scope.get("method") == "POST":
        for pattern, template in TEMPLATES:
            if pattern.match(scope.get("path", "")):
                return template
    return "unmatched"


class _Exchange:
    """One request as the middleware sees it: its status, whether its body is in, whether the client left."""

    def __init__(self, receive: Any, send: Any) -> None:
        self._receive = receive
        self._send = send
        self.code = 500
        self.body_in = False
        self.responded = False
        self.disconnected = False
        self.task: asyncio.Task | None = None
        self.watcher: asyncio.Task | None = None

    async def receive(self) -> dict:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.responded:
            self.disconnected = True
        elif message["type"] == "http.request" and not message.get("more_body") and not self.body_in:
            self.body_in = True
            self.watcher = asyncio.ensure_future(self._watch())
        return message

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.code = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            self.responded = True
        await self._send(message)

    async def _watch(self) -> None:
        """Once the body is in, the next message is a disconnect: the client's, or the server's after responding."""
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.responded and self.task is not None:
            self.disconnected = True
            self.task.cancel()


class MetricsMiddleware:
    """ASGI middleware timing every HTTP request and counting it by route and status (5xx when it raised, 499
    when the client went away first)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(receive, send)
        start = time.perf_counter()
        try:
            exchange.task = asyncio.ensure_future(self.app(scope, exchange.receive, exchange.send))
            try:
                await exchange.task
            except (asyncio.CancelledError, ClientDisconnect):
                current = asyncio.current_task()
                if not exchange.disconnected or (current is not None and current.cancelling()):
                    raise  # the server is stopping, or the app failed on its own
        finally:
            if exchange.watcher is not None:
                exchange.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await exchange.watcher
            seconds = time.perf_counter() - start
            route = route_label(scope)
            code = DISCONNECTED if exchange.disconnected else exchange.code
            REQUEST_SECONDS.labels(route=route).observe(seconds)
            REQUESTS.labels(route=route, code=str(code)).inc()
            if code >= 400:
                ERRORS.labels(route=route, kind=error_kind(code)).inc()
            if exchange.disconnected:
                stage = "after sending its body" if exchange.body_in else "while sending its body"
                log.info(
                    "client went away %s: %s %s after %.2f s", stage, scope.get("method"), scope.get("path"), seconds
                )


def error_kind(code: int) -> str:
    """Whose fault an error status is: ``disconnect`` for 499, ``server`` for a 5xx other than 501 Not Implemented,
    else ``client``."""
    if code == DISCONNECTED:
        return "disconnect"
    return "server" if code >= 500 and code != 501 else "client"
