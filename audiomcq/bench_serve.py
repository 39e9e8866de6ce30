"""``audiomcq bench serve``: the real model server under concurrent load, on a tiny model built from config.

The server runs as a subprocess (``audiomcq serve``) on 127.0.0.1; N client threads, each on its own keep-alive
connection, send V1 ``:predict`` requests (one held-out question with its real WAV each) for a fixed time. The
result counts requests and failures and gives latency percentiles, throughput and the mean batch the
micro-batcher formed (read back from the server's own ``/metrics``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(
    model_dir: str | Path, args: Sequence[str] = (), log_path: str | Path | None = None, timeout: float = 180.0
) -> Iterator[str]:
    """``audiomcq serve`` on a free port until the block ends; yields its base URL once the model is ready."""
    port = free_port()
    cmd = [sys.executable, "-m", "audiomcq.cli", "serve", "--model-dir", str(model_dir), "--http-port", str(port)]
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen([*cmd, *args], stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _ready(f"{base}/v2/models/audiomcq/ready"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AudioMCQError(f"the model server on port {port} did not become ready (log: {log_path})")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path:
            log.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _client(host: str, port: int, bodies: list[bytes], stop: float, out: list[tuple[float, int]]) -> None:
    """Send requests back to back until ``stop``; record (seconds, status) each, status 0 for a broken connection."""
    conn = http.client.HTTPConnection(host, port, timeout=120)
    i = 0
    while time.monotonic() < stop:
        body = bodies[i % len(bodies)]
        i += 1
        start = time.perf_counter()
        try:
            conn.request("POST", "/v1/models/audiomcq:predict", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=120)
            status = 0
        out.append((time.perf_counter() - start, status))
    conn.close()


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def bench_serve(
    work: str | Path, clients: int = 32, seconds: float = 30.0, max_batch_size: int = 8, max_wait_ms: float = 10.0
) -> dict[str, Any]:
    """Load the server with ``clients`` concurrent clients for ``seconds``; returns counts, latency and throughput."""
    import numpy as np

    from audiomcq.models.tiny import TinySpec, build_tiny, save_tiny, tokenizer_texts
    from audiomcq.serve import request_body
    from audiomcq.synth import generate

    work = Path(work)
    generate(work / "corpus", 32, seed=5, eval_n=32)
    model, processor = build_tiny("qwen2_5_omni", tokenizer_texts([work / "corpus" / "train.jsonl"]), TinySpec())
    model_dir = save_tiny(model, processor, work / "model")
    records = [json.loads(line) for line in (work / "corpus" / "eval.jsonl").read_text().splitlines()]
    bodies = [json.dumps(request_body((work / "corpus" / r["audio_path"]).read_bytes(), r["question"],
                                      r["choices"])).encode() for r in records]  # fmt: skip
    args = ["--max-batch-size", str(max_batch_size), "--max-wait-ms", str(max_wait_ms)]
    with running_server(model_dir, args, work / "server.log") as base:
        host, port = base.removeprefix("http://").split(":")
        _client(host, int(port), bodies[:2], time.monotonic() + 1.0, [])  # warm-up, not counted
        before = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
        results: list[list[tuple[float, int]]] = [[] for _ in range(clients)]
        start = time.monotonic()
        threads = [threading.Thread(target=_client, args=(host, int(port), bodies[k:] + bodies[:k], start + seconds,
                                                          results[k])) for k in range(clients)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        after = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    rows = [r for per_client in results for r in per_client]
    ok = np.array([s for s, status in rows if status == 200])
    forwards = _metric(after, "audiomcq_serve_batch_size_count") - _metric(before, "audiomcq_serve_batch_size_count")
    batched = _metric(after, "audiomcq_serve_batch_size_sum") - _metric(before, "audiomcq_serve_batch_size_sum")
    return {
        "clients": clients,
        "seconds": elapsed,
        "max_batch_size": max_batch_size,
        "requests": len(rows),
        "failures": sum(status != 200 for _, status in rows),
        "p50_ms": float(np.percentile(ok, 50) * 1000) if len(ok) else float("nan"),
        "p99_ms": float(np.percentile(ok, 99) * 1000) if len(ok) else float("nan"),
        "throughput_rps": len(ok) / elapsed,
        "mean_batch": batched / forwards if forwards else 0.0,
    }
