"""What kserve would get wrong before any model code runs: request bodies by their label, and routes it half-offers.

- JSON whatever the label: kserve reads a V1 or V2 body as JSON only when its Content-Type says so, and treats
  anything else as binary (a V2 body then needs ``Inference-Header-Content-Length``; a V1 body reaches the model as
  bytes). tritonclient's JSON mode and plain curl (``application/x-www-form-urlencoded``) send no JSON label, so a
  body that parses as JSON and has no binary header is relabelled ``application/json``; one that does not parse is
  a 400 saying so.
- Binary V2 bodies kserve's ``InferRequest.from_bytes`` cannot decode (a missing ``inputs`` key, bytes that do not
  fit a tensor's shape, BYTES elements that are not UTF-8 such as raw WAV bytes) would be kserve's 500: they are
  decoded here first, and a failure is a 400 naming the reason.
- Model versions (``/v2/models/{name}/versions/{v}/...``) and ``:explain`` exist as kserve routes but answer 501,
  which clients and dashboards read as a server fault; the model has no versions and no explainer, so they are a
  404 saying which route to use.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from kserve.protocol.infer_type import InferRequest

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
    """ASGI middleware: version and explain routes answered with a 404, bodies labelled by what they are, binary V2
    bodies checked before kserve decodes them."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if match := VERSIONED.match(path):
            rest = match["rest"] or ""
            await _reply(send, 404, f"model {match['name']!r} has no versions: use /v2/models/{match['name']}{rest}")
            return
        if match := EXPLAIN.match(path):
            name = match["name"]
            await _reply(send, 404, f"model {name!r} has no explainer: use /v1/models/{name}:predict")
            return
        v2 = V2_INFER.match(path)
        if not (v2 or V1_PREDICT.match(path)) or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        body = await _body(receive)
        length = headers.get(HEADER)
        if length is not None and v2:
            try:
                InferRequest.from_bytes(body, int(length), v2["name"])
            except Exception as err:  # noqa: BLE001 - what kserve would turn into a 500 is the client's malformed body
                reason = f"{type(err).__name__}: {err}"[:300]  # kserve may quote a whole tensor: keep the start
                if "using UTF-8" in str(err):
                    reason = "a BYTES element is not UTF-8 text (send audio as base64 text, not raw bytes)"
                await _reply(send, 400, f"invalid binary inference request: {reason}")
                return
        elif length is None and headers.get(b"content-type", b"").lower() not in JSON_TYPES:
            if not await asyncio.to_thread(_is_json, body):  # a large body would hold up the event loop
                await _reply(send, 400, "the body is not valid JSON (binary V2 tensors need the "
                                        "Inference-Header-Content-Length header)")  # fmt: skip
                return
            labelled = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
            scope = {**scope, "headers": [*labelled, (b"content-type", b"application/json")]}
        await self.app(scope, _replay(body, receive), send)


async def _reply(send: Any, status: int, message: str) -> None:
    payload = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


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
