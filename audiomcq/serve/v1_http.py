"""The V1 ``:predict`` route, its body parsed on the decoding pool instead of the event loop.

kserve's own route parses a V1 body with orjson on the event loop, and only when its Content-Type says JSON (any
other label hands the model raw bytes). This route, registered ahead of kserve's for the same path, takes the same
steps through kserve's dataplane (``audiomcq.serve.v2_http.infer_off_loop``) with the parse, once, and the encoding
on the decoding pool, and reads every body as JSON whatever its label: tritonclient's JSON mode and plain curl
(``application/x-www-form-urlencoded``) send none. A body that is not JSON, or that holds more values than any
request (``audiomcq.serve.bounds.parse_json``), is a 400 saying so. A binary CloudEvent (``ce-`` headers) goes
through kserve's own decoding, still off the loop.
"""

from __future__ import annotations

import functools
from typing import Any

from cloudevents.sdk.converters.util import has_binary_headers
from fastapi import APIRouter, Request, Response
from kserve.errors import InvalidInput

from audiomcq.serve.bounds import NotJSON, parse_json
from audiomcq.serve.v2_http import infer_off_loop


def decode(dataplane: Any, body: bytes, headers: dict[str, str]) -> tuple[Any, dict]:
    """The request kserve's ``infer`` takes and the CloudEvent attributes of a V1 body (runs on the pool)."""
    if has_binary_headers(headers):
        return dataplane.decode(body=body, headers=headers)
    try:
        document = parse_json(body)
    except NotJSON as err:
        raise InvalidInput(str(err)) from None
    return dataplane.decode_cloudevent(document)


def v1_router(dataplane: Any) -> APIRouter:
    """``POST /v1/models/{model_name}:predict`` through ``dataplane``, its parsing and encoding off the loop."""
    router = APIRouter()

    @router.post("/v1/models/{model_name}:predict")
    async def predict(model_name: str, request: Request) -> Response:
        return await infer_off_loop(dataplane, model_name, request, functools.partial(decode, dataplane))

    return router
