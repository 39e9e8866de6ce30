"""A guard for V2 requests in the binary tensor extension, whose decoding kserve does before any model code runs.

kserve's ``InferRequest.from_bytes`` answers a malformed binary request with a 500 (a missing ``inputs`` key, a
tensor whose bytes do not fit its shape, BYTES elements that are not UTF-8, such as raw WAV bytes). The guard decodes
such a request the same way first and answers a failure with a 400 naming the reason; a request that decodes is
passed on unchanged, its body replayed.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from kserve.protocol.infer_type import InferRequest

HEADER = b"inference-header-content-length"
V2_INFER = re.compile(r"^/v2/models/(?P<name>[^/]+)(/versions/[^/]+)?/infer$")


class BinaryV2Guard:
    """ASGI middleware: 400 instead of kserve's 500 for binary V2 bodies it cannot decode."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        match = V2_INFER.match(scope.get("path", "")) if scope["type"] == "http" else None
        length = dict(scope.get("headers", [])).get(HEADER) if match else None
        if length is None:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            InferRequest.from_bytes(body, int(length), match["name"])
        except Exception as err:  # noqa: BLE001 - what kserve would turn into a 500 is the client's malformed body
            reason = f"{type(err).__name__}: {err}"[:300]  # kserve may quote a whole tensor: keep the start
            if "using UTF-8" in str(err):
                reason = "a BYTES element is not UTF-8 text (send audio as base64 text, not raw bytes)"
            await _reply(send, 400, f"invalid binary inference request: {reason}")
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


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
