"""The V2 ``/infer`` route, decoding and encoding tensors on the decoding pool instead of the event loop.

kserve's own route decodes a body on the event loop: a binary one with ``InferRequest.from_bytes``, a Python loop
over every BYTES element (a 40 MiB body of tiny elements takes seconds, during which no other request, health
probes included, is answered), a JSON one with pydantic. This route, registered ahead of kserve's for the same
path, takes the same steps through kserve's dataplane (readiness, ``infer`` with its metrics, ``encode``), with the
decoding and encoding on ``audiomcq.serve.bounds.offload``. Before anything is decoded, every input's element count
(from its shape and its JSON data) is checked against what one request can hold, ``max_instances`` questions of up
to ``max_choices`` choices, so a body of millions of elements is refused without being walked. A binary body
kserve cannot decode (a missing ``inputs`` key, bytes that do not fit a shape, BYTES elements that are not UTF-8
such as raw WAV bytes) is a 400 naming the reason, never a 500.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError

from audiomcq.serve.bounds import NotJSON, offload, parse_json
from audiomcq.serve.config import ServeConfig
from audiomcq.serve.v2 import INPUTS, OUTPUT_TYPES

LENGTH = "inference-header-content-length"


def _leaves(data: Any, limit: int) -> int:
    """How many scalars a (nested) JSON list holds, counting no further than just past ``limit``."""
    count, stack = 0, [data]
    while stack and count <= limit:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            count += 1
    return count


def _bytes_elements(data: memoryview, limit: int) -> int:
    """How many length-prefixed BYTES elements a binary tensor holds, counting no further than just past ``limit``."""
    count = offset = 0
    while offset + 4 <= len(data) and count <= limit:
        offset += 4 + struct.unpack_from("<I", data, offset)[0]
        count += 1
    return count


def check_counts(document: Any, config: ServeConfig, binary: memoryview | None = None) -> None:
    """Refuse a request whose inputs are not BYTES or hold more elements than any request may, from its header and
    the length prefixes of its binary tensors (``binary``: the bytes after the header), before decoding any."""
    if not isinstance(document, dict):
        return  # not a request at all: the full decode says why
    limit = config.max_instances * config.max_choices
    most = f"{limit}, the most one request can hold ({config.max_instances} questions of {config.max_choices} choices)"
    inputs, outputs = document.get("inputs"), document.get("outputs")
    if isinstance(inputs, list) and len(inputs) > len(INPUTS):
        raise InvalidInput(f"{len(inputs)} inputs in one request; expected at most {len(INPUTS)} of {list(INPUTS)}")
    if isinstance(outputs, list) and len(outputs) > len(OUTPUT_TYPES):
        raise InvalidInput(f"{len(outputs)} requested outputs; the model has {len(OUTPUT_TYPES)}")
    offset = 0
    for tensor in inputs if isinstance(inputs, list) else ():
        if not isinstance(tensor, dict):
            continue
        name, shape, datatype = repr(tensor.get("name"))[:60], tensor.get("shape"), tensor.get("datatype")
        if isinstance(datatype, str) and datatype != "BYTES":  # decoding numbers would build a list of every one
            raise InvalidInput(f"input {name} must be BYTES, not {datatype[:20]}")
        if isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            count = math.prod(max(d, 0) for d in shape)
            if count > limit:
                raise InvalidInput(f"input {name} has shape {shape[:8]}: {count} elements, more than {most}")
        data, parameters = tensor.get("data"), tensor.get("parameters")
        if isinstance(data, list) and _leaves(data, limit) > limit:
            raise InvalidInput(f"input {name} has more data elements than {most}")
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if binary is not None and data is None and isinstance(size, int) and size > 0:
            if _bytes_elements(binary[offset : offset + size], limit) > limit:
                raise InvalidInput(f"input {name} has more binary elements than {most}")
            offset += size


def _binary(body: bytes, length_text: str, model_name: str, config: ServeConfig) -> InferRequest:
    try:
        length = int(length_text)
        if not 0 < length <= len(body):
            raise ValueError(f"Inference-Header-Content-Length {length} is outside the body's {len(body)} bytes")
        check_counts(orjson.loads(body[:length]), config, memoryview(body)[length:])
        return InferRequest.from_bytes(body, length, model_name)
    except InvalidInput:
        raise
    except Exception as err:  # noqa: BLE001 - whatever kserve fails on here is the client's malformed body
        reason = f"{type(err).__name__}: {err}"[:300]  # kserve may quote a whole tensor: keep the start
        if "using UTF-8" in str(err):
            reason = "a BYTES element is not UTF-8 text (send audio as base64 text, not raw bytes)"
        raise InvalidInput(f"invalid binary inference request: {reason}") from None


def _json(body: bytes, model_name: str, config: ServeConfig) -> InferRequest:
    try:
        document = parse_json(body)
    except NotJSON as err:
        raise InvalidInput(f"{err}; binary V2 tensors need the Inference-Header-Content-Length header") from None
    check_counts(document, config)
    try:
        request = InferenceRequest.model_validate(document)
    except ValidationError as err:
        raise RequestValidationError(err.errors(include_url=False, include_context=False)) from None
    return InferRequest.from_inference_request(request, model_name)


def decode(body: bytes, headers: dict[str, str], model_name: str, config: ServeConfig) -> InferRequest:
    """The request in a binary (with ``Inference-Header-Content-Length``) or JSON body (runs on the pool)."""
    length = headers.get(LENGTH)
    return _binary(body, length, model_name, config) if length is not None else _json(body, model_name, config)


def encode(
    dataplane: Any, model_name: str, result: Any, headers: dict[str, str], extra: dict[str, str], attributes: dict
) -> Response:
    """The HTTP response for a result: binary or JSON as the request asked, a CloudEvent when it was one (runs on
    the pool)."""
    content, encoded = dataplane.encode(
        model_name=model_name, response=result, headers=headers, req_attributes=attributes
    )
    response_headers = {**extra, **encoded}
    response_headers.pop("content-length", None)
    label = response_headers.pop("content-type", None)
    if isinstance(content, bytes | str):
        return Response(content, headers=response_headers, media_type=label or "application/octet-stream")
    body = orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)  # as ORJSONResponse
    return Response(body, headers=response_headers, media_type="application/json")


async def infer_off_loop(
    dataplane: Any, model_name: str, request: Request, decode: Callable[[bytes, dict[str, str]], tuple[Any, dict]]
) -> Response:
    """kserve's steps for one inference request: readiness, ``decode(body, headers)`` (the request and its
    CloudEvent attributes) on the pool, the dataplane's ``infer`` with its metrics, the encoding on the pool."""
    if not await dataplane.model_ready(model_name, True):
        raise ModelNotReady(model_name)
    headers = dict(request.headers)
    decoded, attributes = await offload(decode, await request.body(), headers)
    result, extra = await dataplane.infer(model_name=model_name, request=decoded, headers=headers)
    return await offload(encode, dataplane, model_name, result, headers, extra, attributes)


def v2_router(dataplane: Any, config: ServeConfig) -> APIRouter:
    """``POST /v2/models/{model_name}/infer`` through ``dataplane``, its decoding and encoding off the loop."""
    router = APIRouter()

    @router.post("/v2/models/{model_name}/infer")
    async def infer(model_name: str, request: Request) -> Response:
        return await infer_off_loop(
            dataplane, model_name, request, lambda body, headers: (decode(body, headers, model_name, config), {})
        )

    return router
