"""``audiomcq bench serve``: the real model server under concurrent load, on a tiny model built from config.

The server runs as a subprocess (``audiomcq serve``) on 127.0.0.1; N client threads, each on its own keep-alive
connection, send V1 ``:predict`` requests (one held-out question with its real WAV each) for a fixed time. The
result counts requests and failures and gives latency percentiles, throughput and the mean batch the
micro-batcher formed (read back from the server's own ``/metrics``).

``bench_shared_pass`` (``python -m audiomcq.bench.serve --clip-seconds 30``) compares one audio pass per question
(``--shared-pass true``, the default) with scoring every choice by its own forward over the audio
(``--shared-pass false``): two servers on one model of hidden size 512, long clips, the same questions, load phases
alternating between them so that other work on the machine hits both alike; each figure is the median of the
repeats with their min and max.
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

from audiomcq.bench.measure import bench_work
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


def load(base: str, bodies: list[bytes], clients: int, seconds: float) -> dict[str, float]:
    """``clients`` threads sending ``bodies`` back to back for ``seconds``: requests, failures, latency, throughput."""
    import numpy as np

    host, port = base.removeprefix("http://").split(":")
    results: list[list[tuple[float, int]]] = [[] for _ in range(clients)]
    start = time.monotonic()
    threads = [
        threading.Thread(target=_client, args=(host, int(port), bodies[k:] + bodies[:k], start + seconds, results[k]))
        for k in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start  # the requests still in flight at the deadline are counted, and waited for
    rows = [r for per_client in results for r in per_client]
    ok = np.array([s for s, status in rows if status == 200])
    return {
        "seconds": elapsed,
        "requests": len(rows),
        "failures": sum(status != 200 for _, status in rows),
        "p50_ms": float(np.percentile(ok, 50) * 1000) if len(ok) else float("nan"),
        "p99_ms": float(np.percentile(ok, 99) * 1000) if len(ok) else float("nan"),
        "throughput_rps": len(ok) / elapsed,
    }


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def bench_serve(
    work: str | Path, clients: int = 32, seconds: float = 30.0, max_batch_size: int = 8, max_wait_ms: float = 10.0
) -> dict[str, Any]:
    """Load the server with ``clients`` concurrent clients for ``seconds``; returns counts, latency and throughput."""
    from audiomcq.models.tiny import TinySpec, build_tiny, save_tiny, tokenizer_texts
    from audiomcq.serve import request_body
    from audiomcq.synth import generate

    work = Path(work)
    generate(work / "corpus", 32, seed=5, eval_n=32)
    model, processor = build_tiny("qwen2_5_omni", tokenizer_texts([work / "corpus" / "train.jsonl"]), TinySpec())
    model_dir = save_tiny(model, processor, work / "model")
    records = [json.loads(line) for line in (work / "corpus" / "eval.jsonl").read_text().splitlines()]
    bodies = [
        json.dumps(
            request_body((work / "corpus" / r["audio_path"]).read_bytes(), r["question"], r["choices"])
        ).encode()
        for r in records
    ]
    args = ["--max-batch-size", str(max_batch_size), "--max-wait-ms", str(max_wait_ms)]
    with running_server(model_dir, args, work / "server.log") as base:
        host, port = base.removeprefix("http://").split(":")
        _client(host, int(port), bodies[:2], time.monotonic() + 1.0, [])  # warm-up, not counted
        before = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
        result = load(base, bodies, clients, seconds)
        after = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    forwards = _metric(after, "audiomcq_serve_batch_size_count") - _metric(before, "audiomcq_serve_batch_size_count")
    batched = _metric(after, "audiomcq_serve_batch_size_sum") - _metric(before, "audiomcq_serve_batch_size_sum")
    return {
        "clients": clients,
        "max_batch_size": max_batch_size,
        **result,
        "mean_batch": batched / forwards if forwards else 0.0,
    }


# A tiny Omni thinker of hidden size 512 (the text model and its audio encoder both count in a forward).
SHARED_SPEC = {
    "hidden": 512,
    "layers": 2,
    "heads": 8,
    "kv_heads": 2,
    "audio_d": 256,
    "audio_layers": 2,
    "audio_heads": 4,
}


def _questions(work: Path, count: int, clip_seconds: float, choices: int) -> list[bytes]:
    """V1 bodies of held-out questions with exactly ``choices`` choices, their clips looped to ``clip_seconds``."""
    import io

    import numpy as np
    import soundfile as sf

    from audiomcq.serve import request_body
    from audiomcq.synth.audio import read_wav

    records = [json.loads(line) for line in (work / "corpus" / "eval.jsonl").read_text().splitlines()][:count]
    bodies = []
    for r in records:
        wave = np.resize(read_wav(work / "corpus" / r["audio_path"]), int(clip_seconds * 16000)).astype(np.float32)
        buf = io.BytesIO()
        sf.write(buf, wave, 16000, format="WAV", subtype="PCM_16")
        options = list(dict.fromkeys(r["choices"]))[:choices]
        options += [f"none of these ({k})" for k in range(choices - len(options))]
        bodies.append(json.dumps(request_body(buf.getvalue(), r["question"], options)).encode())
    return bodies


def _spread(values: list[float]) -> dict[str, float]:
    import numpy as np

    return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values))}


def bench_shared_pass(
    work: str | Path,
    clip_seconds: float = 30.0,
    choices: int = 4,
    clients: int = 4,
    seconds: float = 40.0,
    repeats: int = 3,
    max_batch_size: int = 4,
    max_wait_ms: float = 10.0,
) -> dict[str, Any]:
    """Throughput and latency with the shared pass and with per-choice scoring, side by side in one run."""
    from audiomcq.models.tiny import TinySpec, build_tiny, save_tiny, tokenizer_texts
    from audiomcq.synth import generate

    work = Path(work)
    generate(work / "corpus", 32, seed=5, eval_n=16)
    spec = TinySpec(**SHARED_SPEC)
    model, processor = build_tiny("qwen2_5_omni", tokenizer_texts([work / "corpus" / "train.jsonl"]), spec)
    model_dir = save_tiny(model, processor, work / "model")
    bodies = _questions(work, 16, clip_seconds, choices)
    common = [
        "--max-batch-size",
        str(max_batch_size),
        "--max-wait-ms",
        str(max_wait_ms),
        "--max-audio-seconds",
        str(max(clip_seconds, 1.0)),
    ]
    modes = {"shared": "true", "separate": "false"}
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    with contextlib.ExitStack() as stack:
        bases = {
            mode: stack.enter_context(
                running_server(model_dir, [*common, "--shared-pass", flag], work / f"server-{mode}.log")
            )
            for mode, flag in modes.items()
        }
        answers = {}
        for mode, base in bases.items():  # warm-up, not counted; both modes must give the same answer
            req = urllib.request.Request(f"{base}/v1/models/audiomcq:predict", data=bodies[0])
            with urllib.request.urlopen(req, timeout=600) as resp:
                answers[mode] = json.load(resp)["predictions"][0]
        if answers["shared"]["index"] != answers["separate"]["index"]:
            raise AudioMCQError(f"the two modes answered differently: {answers}")
        for _ in range(repeats):
            for mode, base in bases.items():
                runs[mode].append(load(base, bodies, clients, seconds))
    out: dict[str, Any] = {
        "clip_seconds": clip_seconds,
        "choices": choices,
        "hidden": spec.hidden,
        "clients": clients,
        "seconds": seconds,
        "repeats": repeats,
        "runs": runs,
    }
    for mode in modes:
        out[mode] = {key: _spread([r[key] for r in runs[mode]]) for key in ("throughput_rps", "p50_ms", "p99_ms")}
        out[mode]["failures"] = sum(r["failures"] for r in runs[mode])
        out[mode]["requests"] = sum(r["requests"] for r in runs[mode])
    ratios = [s["throughput_rps"] / d["throughput_rps"] for s, d in zip(runs["shared"], runs["separate"], strict=True)]
    out["ratio"] = _spread(ratios)
    return out


def format_shared_pass(r: dict[str, Any]) -> str:
    """The comparison as a small table (median [min-max] over the repeats)."""

    def cell(s: dict[str, float], digits: int) -> str:
        return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"

    title = (
        f"shared pass vs per-choice scoring: {r['clip_seconds']:g} s clips, {r['choices']} choices, hidden "
        f"{r['hidden']}, {r['clients']} clients x {r['seconds']:g} s, {r['repeats']} repeats; median [min-max]"
    )
    header = f"{'mode':<10}{'requests':>9}{'failures':>9}  {'throughput req/s':<22}{'p50 ms':<24}{'p99 ms':<24}"
    lines = [title, header]
    for mode in ("shared", "separate"):
        m = r[mode]
        lines.append(
            f"{mode:<10}{m['requests']:>9}{m['failures']:>9}  {cell(m['throughput_rps'], 2):<22}"
            f"{cell(m['p50_ms'], 0):<24}{cell(m['p99_ms'], 0):<24}"
        )
    lines.append(f"throughput ratio (shared / separate): {cell(r['ratio'], 2)}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m audiomcq.bench.serve``: the shared-pass comparison, printed as a table."""
    import argparse
    import logging

    parser = argparse.ArgumentParser(prog="python -m audiomcq.bench.serve", description=main.__doc__)
    parser.add_argument("--work", type=Path, default=Path("out/bench-serve-shared"))
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--choices", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=40.0, help="length of one load phase")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    bench_work(args.work)  # a fresh run, not a resume of the last one
    r = bench_shared_pass(
        args.work, args.clip_seconds, args.choices, args.clients, args.seconds, args.repeats, args.max_batch_size
    )
    (args.work / "result.json").write_text(json.dumps(r, indent=2))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger(__name__).info("%s", format_shared_pass(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
