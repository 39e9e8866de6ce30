"""What kserve would get wrong before any model code runs: routes it half-offers, and client errors it logs as
server errors.

- Model versions (``/v2/models/{name}/versions/{v}/...``) and ``:explain`` exist as kserve routes but answer 501,
  which clients and dashboards read as a server fault; the model has no versions and no explainer, so they are a
  404 saying which route to use.
- Request bodies are no business of this middleware: the V1, V2 and chat routes of our own
  (``audiomcq.serve.v1_http``, ``v2_http``, ``openai_api``) read them as JSON whatever their label and parse them
  once, on the decoding pool.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from audiomcq.serve.bounds import reply

VERSIONED = re.compile(r"^/v2/models/(?P<name>[^/]+)/versions/[^/]+(?P<rest>/.*)?$")
EXPLAIN = re.compile(r"^/v1/models/(?P<name>[^/]+):explain$")


class RequestGuard:
    """ASGI middleware: version and explain routes answered with a 404."""

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
        await self.app(scope, receive, send)


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
