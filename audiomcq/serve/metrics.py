"""The server's own Prometheus series, exposed on kserve's ``/metrics`` beside its ``request_*_seconds``.

Routes are labelled by their template (``/v1/models/{model_name}:predict``), never by the raw path, so a client
cannot grow the label set; paths that match no route share the label ``unmatched``. An error's ``kind`` says whose
fault it is: ``client`` for 4xx and for 501 (kserve's answer to a feature it does not offer, such as a route a
client made up), ``server`` for every other 5xx. Alerts page on ``server`` only, so no client can page anyone.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram

REQUEST_SECONDS = Histogram(
    "audiomcq_serve_request_seconds",
    "Wall time of one HTTP request, by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
REQUESTS = Counter("audiomcq_serve_requests", "HTTP requests, by route and status code", ["route", "code"])
ERRORS = Counter(
    "audiomcq_serve_errors",
    "Failed HTTP requests, by route and kind (client: 4xx and 501 Not Implemented, server: other 5xx)",
    ["route", "kind"],
)
AUDIO_SECONDS = Counter("audiomcq_serve_audio_seconds", "Seconds of audio in answered questions")
QUESTIONS = Counter("audiomcq_serve_questions", "Questions answered")
ANSWERS = Counter("audiomcq_serve_answers", "Answers by the position of the chosen choice (0 = first)", ["index"])
BATCH_SIZE = Histogram(
    "audiomcq_serve_batch_size", "Questions per model forward", buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)


def record_answers(seconds: list[float], indices: list[int]) -> None:
    """Count the answered questions, their audio and the position of each answer."""
    QUESTIONS.inc(len(indices))
    AUDIO_SECONDS.inc(sum(seconds))
    for index in indices:
        ANSWERS.labels(index=str(index)).inc()


class MetricsMiddleware:
    """ASGI middleware timing every HTTP request and counting it by route and status (5xx when it raised)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            code = status["code"]
            REQUEST_SECONDS.labels(route=route).observe(time.perf_counter() - start)
            REQUESTS.labels(route=route, code=str(code)).inc()
            if code >= 400:
                ERRORS.labels(route=route, kind=error_kind(code)).inc()


def error_kind(code: int) -> str:
    """Whose fault an error status is: ``server`` for a 5xx other than 501 Not Implemented, else ``client``."""
    return "server" if code >= 500 and code != 501 else "client"
