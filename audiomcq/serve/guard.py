"""What kserve would get wrong before any model code runs: request bodies by their label, and routes it half-offers.

- JSON whatever the label: kserve reads a V1 or V2 body as JSON only when its Content-Type says so, and treats
  anything else as binary (a V2 body then needs ``Inference-Header-Content-Length``; a V1 body reaches the model as
  bytes). tritonclient's JSON mode and plain curl (``application/x-www-form-urlencoded``) send no JSON label, so a
  body that parses as JSON and has no binary header is relabelled ``application/json``; one that does not parse is
  a 400 saying so. The check runs on the decoding pool, not the event loop.
- Binary V2 bodies (those with ``Inference-Header-Content-Length``) pass untouched: ``audiomcq.serve.v2_http``
  decodes and checks them off the event loop.
- Model versions (``/v2/models/{name}/versions/{v}/...``) and ``:explain`` exist as kserve routes but answer 501,
  which clients and dashboards read as a server fault; the model has no versions and no explainer, so they are a
  404 saying which route to use.
- A client that goes away while its body is read is a ``ClientDisconnect``, as in Starlette, for the metrics
  middleware to count as a disconnect (not a truncated body to answer).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from starlette.requests import ClientDisconnect

from audiomcq.serve.bounds import offload, reply

HEADER = b"inference-header-content-length"
V2_INFER = re.compile(r"^/v2/models/(?P<name>[^/]+)(/versions/[^/]+)?/infer$")
V1_PREDICT = re.compile(r"^/v1/models/(?P<name>[^/]+):predict$")
VERSIONED = re.compile(r"^/v2/models/(?P<name>[^/]+)/versions/[^/]+(?P<rest>/.*)?$")
EXPLAIN = re.compile(r"^/v1/models/(?P<name>[^/]+):explain$")
JSON_TYPES = (b"application/json", b"application/cloudevents+json", b"application/ld+json")  # kserve's JSON labels


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that hands the already-read body over once, then defers to the real one."""
    replayed = False

    async def replay() -> dict:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the json module's stack
        return False
    return True


class RequestGuard:
    """ASGI middleware: version and explain routes answered with a 404, bodies labelled by what they are."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if match := VERSIONED.match(path):
            rest = match["rest"] or ""
            await reply(send, 404, f"model {match['name']!r} has no versions: use /v2/models/{match['name']}{rest}")
            return
        if match := EXPLAIN.match(path):
            name = match["name"]
            await reply(send, 404, f"model {name!r} has no explainer: use /v1/models/{name}:predict")
            return
        headers = dict(scope.get("headers", []))
        v2 = V2_INFER.match(path)
        binary = v2 is not None and HEADER in headers
        labelled = headers.get(b"content-type", b"").lower() in JSON_TYPES
        if not (v2 or V1_PREDICT.match(path)) or scope.get("method") != "POST" or binary or labelled:
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        if not await offload(_is_json, body):
            await reply(send, 400, "the body is not valid JSON (binary V2 tensors need the "
                                   "Inference-Header-Content-Length header)")  # fmt: skip
            return
        unlabelled = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
        scope = {**scope, "headers": [*unlabelled, (b"content-type", b"application/json")]}
        await self.app(scope, _replay(body, receive), send)


class ClientErrorsAtInfo(logging.Filter):
    """kserve logs every rejected request (``InvalidInput``, a 400) at ERROR with a traceback, which buries real
    server errors under clients' mistakes; this filter turns those records into one INFO line with the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        from kserve.errors import InvalidInput

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, InvalidInput):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args, record.exc_info, record.exc_text = "bad request: %s", (str(exc),), None, None
        return True
