"""How much of a request body the server reads, how long it waits for it, and where the CPU work on it runs.

- ``BodyLimit`` (ASGI middleware) refuses a body over ``max_body_bytes`` with a 413 before anything parses it: from
  its Content-Length at the first read, or, for a body without one (chunked), as soon as the bytes read pass the
  limit. A body that has not fully arrived ``body_timeout_s`` after its headers gets a 408, so a client trickling
  bytes cannot hold a connection and a request open. Both replies close the connection (the rest of the body is
  never read).
- ``offload`` runs blocking request work (binary tensors, base64, audio decoding, ``audio_url`` fetches, JSON
  checks) on a pool of its own, so the event loop keeps answering other requests and health probes meanwhile, and
  a burst of large bodies queues for the pool instead of taking the worker threads kserve keeps for itself. The
  pool is sized like Python's default executor (CPUs + 4, at most 32): fetches wait on the network, while more
  CPU-bound threads would only take turns at the GIL with the event loop.
- ``parse_json`` reads a JSON body (run it through ``offload``). A JSON parser holds the GIL for the whole parse, so
  off the loop is not enough: 36 MiB of small numbers takes seconds during which the loop is stalled all the same.
  Before parsing, its separators (``,`` ``:`` ``[`` ``{``, counted at memory speed) bound how many values the body
  can hold, and a body that could hold more than ``MAX_JSON_SEPARATORS``, far more than any request this server
  answers, is refused unparsed; what remains parses in well under a second, however large its strings.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

log = logging.getLogger(__name__)
T = TypeVar("T")
DECODE_THREADS = min(32, (os.cpu_count() or 1) + 4)
_pool = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="audiomcq-decode")


# The largest valid request has a few hundred thousand: 16 questions of 10 choices with commas in every text, or a
# chat logit_bias over a whole vocabulary (a comma and a colon per token).
MAX_JSON_SEPARATORS = 1 << 20


async def offload(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the decoding pool, awaited without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_pool, functools.partial(fn, *args))


class NotJSON(ValueError):
    """A request body that is not JSON, or that holds more JSON values than any request may (the reason)."""


def parse_json(body: bytes, loads: Callable[[bytes], Any] = orjson.loads) -> Any:
    """The JSON document of a request body, by ``loads``; ``NotJSON`` when it is not one or when its separators
    exceed ``MAX_JSON_SEPARATORS`` (blocking: run it through ``offload``)."""
    separators = sum(body.count(mark) for mark in (b",", b":", b"[", b"{"))
    if separators > MAX_JSON_SEPARATORS:
        raise NotJSON(
            f"the body has {separators} JSON separators (commas, colons, brackets), more than the "
            f"{MAX_JSON_SEPARATORS} any request needs"
        )
    try:
        return loads(body)
    except (ValueError, RecursionError) as err:  # orjson's and json's errors are ValueErrors; RecursionError: nesting
        raise NotJSON(f"the body is not valid JSON ({str(err)[:200]})") from None


class BodyRefused(Exception):
    """A request body the server will not read further: the status to answer with and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def declared_length(scope: dict) -> int | None:
    """The request's Content-Length, or None when it has none (or one that is not a number)."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class _Reader:
    """The ``receive`` the application sees: counts body bytes against the limit and reads against the deadline."""

    def __init__(self, receive: Any, limit: int, timeout_s: float, declared: int | None) -> None:
        self.receive = receive
        self.limit = limit
        self.timeout_s = timeout_s
        self.declared = declared
        self.deadline = asyncio.get_running_loop().time() + timeout_s
        self.read = 0
        self.complete = False
        self.refusal: BodyRefused | None = None

    def refuse(self, status: int, reason: str) -> BodyRefused:
        self.refusal = BodyRefused(status, reason)
        return self.refusal

    async def __call__(self) -> dict:
        if self.refusal is not None:
            raise self.refusal
        if self.complete:  # the body is in: later reads only wait for a disconnect, with no deadline
            return await self.receive()
        if self.declared is not None and self.declared > self.limit:
            raise self.refuse(
                413,
                f"the request body has {self.declared} bytes, more than the limit of {self.limit} (--max-body-bytes)",
            )
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self.receive()
        except TimeoutError:
            raise self.refuse(
                408, f"the request body did not arrive within {self.timeout_s:g} s (--body-timeout-s)"
            ) from None
        if message["type"] == "http.request":
            self.read += len(message.get("body", b""))
            if self.read > self.limit:
                raise self.refuse(
                    413, f"the request body is larger than the limit of {self.limit} bytes (--max-body-bytes)"
                )
            self.complete = not message.get("more_body", False)
        return message


class BodyLimit:
    """ASGI middleware bounding request bodies in size and in time (see the module docstring)."""

    def __init__(self, app: Any, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reader = _Reader(receive, self.max_bytes, self.timeout_s, declared_length(scope))
        started = answered = False

        async def refuse(refusal: BodyRefused) -> None:
            nonlocal answered
            answered = True
            log.info("refused %s %s: %s", scope.get("method"), scope.get("path"), refusal.reason)
            await reply(send, refusal.status, refusal.reason, close=True)

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if reader.refusal is None:
                started = started or message["type"] == "http.response.start"
                await send(message)
            elif not started:
                # The application caught the refusal and answered itself (FastAPI turns an error while reading a
                # body into its own 400): the refusal is the answer the client needs, and the rest is dropped.
                started = True
                await refuse(reader.refusal)

        try:
            await self.app(scope, reader, guarded_send)
        except BodyRefused as refusal:
            if answered:
                return
            if started:  # a response already under way cannot become a 413: the connection is dropped
                raise
            await refuse(refusal)


async def reply(send: Any, status: int, message: str, close: bool = False) -> None:
    """A JSON ``{"error": message}`` response; ``close`` ends the connection after it (an unread body follows)."""
    payload = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
