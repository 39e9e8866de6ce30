"""Bounded serving, in-process: the body limit and read deadline (ASGI middleware), clients that hang up counted as
disconnects and their requests cancelled, round-robin batches, the per-request audio budget, V2 element checks
before decoding, and the listening and read settings. ``tests/serve/test_serve_bounds.py`` runs a real server."""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import threading
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("kserve")


def _wav(seconds: float, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    noise = np.random.default_rng(0).standard_normal(int(seconds * rate)).astype(np.float32) * 0.1
    sf.write(buf, noise, rate, format="WAV")
    return buf.getvalue()


def _asgi(app, scope: dict, messages: list[dict], pause: float = 0.0) -> tuple[list[dict], int]:
    """Run ``app`` on one request whose body arrives as ``messages`` (then nothing, or a disconnect after
    ``pause``): the messages it sent and how many times it read."""
    sent: list[dict] = []
    reads = 0

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        if reads <= len(messages):
            return messages[reads - 1]
        await asyncio.sleep(pause or 30)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    async def run() -> None:
        await asyncio.wait_for(app(scope, receive, send), 10)

    asyncio.run(run())
    return sent, reads


def _scope(path: str = "/v1/models/m:predict", headers: list | None = None) -> dict:
    return {"type": "http", "method": "POST", "path": path, "headers": headers or []}


async def _reads_everything(scope: dict, receive, send) -> None:
    """An application that reads the whole body, then answers 200 with its size."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def _status(sent: list[dict]) -> tuple[int, dict, str]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body.decode()


def test_a_body_over_its_declared_limit_is_413_before_a_byte_is_read():
    from audiomcq.serve.bounds import BodyLimit

    app = BodyLimit(_reads_everything, max_bytes=100, timeout_s=5)
    sent, reads = _asgi(app, _scope(headers=[(b"content-length", b"400000000")]), [])
    status, headers, body = _status(sent)
    assert status == 413 and reads == 0 and "--max-body-bytes" in body
    assert headers[b"connection"] == b"close"  # the unread body is never read: the connection ends


def test_a_streamed_body_is_413_once_it_passes_the_limit_and_a_slow_one_408():
    from audiomcq.serve.bounds import BodyLimit

    chunks = [{"type": "http.request", "body": b"x" * 60, "more_body": True} for _ in range(10)]
    sent, reads = _asgi(BodyLimit(_reads_everything, max_bytes=100, timeout_s=5), _scope(), chunks)
    assert _status(sent)[0] == 413 and reads == 2  # refused at the chunk that passed 100 bytes, not at the end
    fits = [{"type": "http.request", "body": b"x" * 60, "more_body": True}, {"type": "http.request", "body": b"y"}]
    sent, _ = _asgi(BodyLimit(_reads_everything, max_bytes=100, timeout_s=5), _scope(), fits)
    assert _status(sent)[:1] == (200,) and _status(sent)[2] == "61"
    start = time.monotonic()
    trickle = [{"type": "http.request", "body": b"x", "more_body": True}]  # then nothing more arrives
    sent, _ = _asgi(BodyLimit(_reads_everything, max_bytes=100, timeout_s=0.3), _scope(), trickle)
    status, _, body = _status(sent)
    assert status == 408 and "--body-timeout-s" in body and time.monotonic() - start < 3


def test_an_application_that_answers_the_refusal_itself_still_sends_413():
    from audiomcq.serve.bounds import BodyLimit

    async def swallows(scope, receive, send) -> None:  # what FastAPI does with any error while reading a body
        try:
            await receive()
        except Exception:  # noqa: BLE001 - imitating a framework
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b"There was an error parsing the body"})

    sent, _ = _asgi(BodyLimit(swallows, max_bytes=10, timeout_s=5), _scope(headers=[(b"content-length", b"99")]), [])
    assert _status(sent)[0] == 413 and len([m for m in sent if m["type"] == "http.response.start"]) == 1


def _sample(name: str, labels: dict) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_client_that_hangs_up_is_a_disconnect_and_its_request_is_cancelled(caplog):
    from starlette.requests import ClientDisconnect

    from audiomcq.serve.metrics import MetricsMiddleware

    route = {"route": "/v1/models/{model_name}:predict", "kind": "disconnect"}
    server = {"route": "/v1/models/{model_name}:predict", "kind": "server"}
    before = _sample("audiomcq_serve_errors_total", route)
    server_before = _sample("audiomcq_serve_errors_total", server)

    async def mid_body(scope, receive, send) -> None:  # Starlette's Request.body() on a disconnect
        while (await receive())["type"] != "http.disconnect":
            pass
        raise ClientDisconnect()

    cancelled = threading.Event()

    async def slow_model(scope, receive, send) -> None:
        await receive()
        try:
            await asyncio.sleep(20)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    partial = [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    with caplog.at_level("INFO", logger="audiomcq.serve.metrics"):
        _asgi(MetricsMiddleware(mid_body), _scope(), partial)
        start = time.monotonic()
        _asgi(MetricsMiddleware(slow_model), _scope(), [{"type": "http.request", "body": b"{}"}], pause=0.1)
    assert cancelled.is_set() and time.monotonic() - start < 5  # the work stopped when the client left
    assert _sample("audiomcq_serve_errors_total", route) == before + 2
    assert _sample("audiomcq_serve_errors_total", server) == server_before
    assert "client went away" in caplog.text and "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)


def test_batches_are_filled_round_robin_so_a_big_request_does_not_hold_back_a_small_one():
    from audiomcq.serve.batcher import MicroBatcher

    batches: list[list[str]] = []

    def forward(items: list[str]) -> list[str]:
        batches.append(items)
        return items

    async def run() -> None:
        batcher = MicroBatcher(forward, max_batch=4, max_wait_ms=20)
        big = [f"big{i}" for i in range(10)]
        results = await asyncio.gather(batcher.submit(big), batcher.submit(["small"]))
        assert results == [big, ["small"]]

    asyncio.run(run())
    assert "small" in batches[0] and len(batches[0]) == 4  # not behind the 10 questions queued before it
    assert [len(b) for b in batches] == [4, 4, 3]


def test_the_clips_of_one_request_together_are_within_max_request_audio_seconds():
    from kserve.errors import InvalidInput

    from audiomcq.serve.config import ServeConfig
    from audiomcq.serve.inputs import parse_v1

    clip = base64.b64encode(_wav(1.0)).decode()
    instance = {"audio": clip, "question": "What is heard?", "choices": ["a", "b"]}
    config = ServeConfig(max_request_audio_seconds=2.5)
    assert len(parse_v1({"instances": [instance, instance]}, config)) == 2
    with pytest.raises(InvalidInput, match=r"instance 2: .*more than 2.5 s together.*--max-request-audio-seconds"):
        parse_v1({"instances": [instance] * 3}, config)
    assert ServeConfig().max_request_audio_seconds == 120  # 4 full-length clips, not 16


def test_v2_inputs_are_checked_from_the_header_before_decoding():
    from kserve.errors import InvalidInput

    from audiomcq.serve.config import ServeConfig
    from audiomcq.serve.v2_http import check_counts

    config = ServeConfig(max_instances=4, max_choices=5)

    def tensor(**fields) -> dict:
        return {"inputs": [{"name": "question", "datatype": "BYTES", "shape": [1], **fields}]}

    check_counts(tensor(data=["q"]), config)
    with pytest.raises(InvalidInput, match="21 elements, more than 20"):
        check_counts(tensor(shape=[21]), config)
    with pytest.raises(InvalidInput, match="more data elements than 20"):
        check_counts(tensor(data=[["x"] * 7] * 3), config)
    with pytest.raises(InvalidInput, match="must be BYTES, not FP32"):
        check_counts(tensor(datatype="FP32"), config)
    tiny = (struct.pack("<I", 1) + b"x") * 21  # 21 one-byte elements behind a shape that claims one
    with pytest.raises(InvalidInput, match="more binary elements than 20"):
        check_counts(tensor(parameters={"binary_data_size": len(tiny)}), config, memoryview(tiny))
    check_counts(tensor(parameters={"binary_data_size": 5}), config, memoryview(tiny[:5]))


def test_listening_and_read_settings_come_from_flags_and_the_environment(monkeypatch):
    import argparse

    from audiomcq.serve.config import ServeConfig, add_arguments

    assert ServeConfig().host == "0.0.0.0"  # what kserve always listened on
    monkeypatch.setenv("AUDIOMCQ_SERVE_HOST", "127.0.0.1")
    monkeypatch.setenv("AUDIOMCQ_SERVE_BODY_TIMEOUT_S", "7.5")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = ServeConfig.from_args(parser.parse_args(["--max-body-bytes", "1024", "--header-timeout-s", "3"]))
    assert (config.host, config.body_timeout_s, config.max_body_bytes, config.header_timeout_s) == (
        "127.0.0.1",
        7.5,
        1024,
        3.0,
    )
    assert (config.max_header_bytes, config.keep_alive_s) == (64 * 1024, 65.0)
