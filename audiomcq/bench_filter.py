"""``audiomcq bench filter``: the filter's speed and memory targets, measured side by side in one run.

1. Batched engine vs a per-sample ``generate`` loop (tiny model, real clips), in fp32 and in bf16 (same dtype on
   both sides), and each side in its fastest dtype.
2. Cost per sample of silent filtering with the shared silence prefix vs recomputing the silence for every sample
   vs the same prompts text-only, at the tiny width and at a random hidden-1024, 4-layer config.
3. Peak RSS of ``audiomcq filter run`` over 10k vs 100k synthetic records (streaming: memory must not grow).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audiomcq.synth.audio import SR

log = logging.getLogger(__name__)
DTYPES = ("float32", "bfloat16")
WIDTHS = {"tiny (h128, 2 layers)": {"hidden": 128, "layers": 2}, "h1024, 4 layers": {"hidden": 1024, "layers": 4}}
RSS_SCRIPT = (
    "import resource, sys\nfrom audiomcq.cli import main\nrc = main(sys.argv[1:])\n"
    "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)"
)


def _timed(fn: Callable[[], Any], repeat: int = 2) -> float:
    """Best of ``repeat`` wall times (the first call also warms caches)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_filter(work: str | Path, n: int = 32, rss_sizes: Sequence[int] = (10_000, 100_000)) -> dict[str, Any]:
    """Run every measurement; returns the numbers (``audiomcq bench filter`` prints them)."""
    from audiomcq.data.io import read_records
    from audiomcq.inference import EngineSpec, Request, Sampling, make_engine
    from audiomcq.models.batch import generate_batch, load_waveform
    from audiomcq.models.tiny import TinySpec, build_tiny, save_tiny, tokenizer_texts
    from audiomcq.synth import generate

    work = Path(work)
    generate(work / "corpus", n, seed=5, eval_n=0)
    records = read_records(work / "corpus" / "train.jsonl")
    texts = tokenizer_texts([work / "corpus" / "train.jsonl"])
    models = {}
    for label, size in WIDTHS.items():
        model, processor = build_tiny("qwen2_5_omni", texts, TinySpec(**size))
        models[label] = save_tiny(model, processor, work / f"model-{size['hidden']}")
    greedy = Sampling(max_new_tokens=16)
    tiny = str(models[next(iter(WIDTHS))])
    clips = [Request(r.question, tuple(r.choices), load_waveform(r, work / "corpus")) for r in records]
    result: dict[str, Any] = {"samples": n, "by_dtype": {}}
    for dtype in DTYPES:  # bf16 matmuls are several times faster on CPUs with AVX512-BF16/AMX, fp32 elsewhere
        engine = make_engine(EngineSpec(tiny, batch_size=n, dtype=dtype))
        m, p = engine.loaded.model, engine.loaded.processor
        batched = _timed(lambda e=engine: e.generate(clips, greedy))
        loop = _timed(lambda m=m, p=p: [generate_batch(m, p, [(c.question, c.choices, c.audio)], 16) for c in clips],
                      repeat=1)  # fmt: skip
        result["by_dtype"][dtype] = {"batched_s": batched, "loop_s": loop, "batched_speedup": loop / batched}
    cells = result["by_dtype"].values()
    best_batched, best_loop = min(c["batched_s"] for c in cells), min(c["loop_s"] for c in cells)
    result["best_vs_best_speedup"] = best_loop / best_batched  # each side in its fastest dtype
    silence = np.zeros(30 * SR, np.float32)
    silent = [Request(c.question, c.choices, silence) for c in clips]
    result["silent_cost"] = {}
    for label, path in models.items():
        shared = make_engine(EngineSpec(str(path), batch_size=16))
        plain = make_engine(EngineSpec(str(path), batch_size=16, shared_prefix=False))
        costs = {
            "shared_silence_ms": _timed(lambda e=shared: e.generate(silent, greedy)),
            "recomputed_silence_ms": _timed(lambda e=plain: e.generate(silent, greedy), repeat=1),
            "text_only_ms": _timed(lambda e=plain: _text_only(e, silent, 16)),
        }
        costs = {k: 1000 * v / n for k, v in costs.items()}
        costs["recompute_over_shared"] = costs["recomputed_silence_ms"] / costs["shared_silence_ms"]
        costs["shared_over_text_only"] = costs["shared_silence_ms"] / costs["text_only_ms"]
        result["silent_cost"][label] = costs
    result["peak_rss_mb"] = {size: _filter_rss(work, tiny, size) for size in rss_sizes}
    small, large = (result["peak_rss_mb"][s] for s in (min(rss_sizes), max(rss_sizes)))
    result["rss_growth_pct"] = 100.0 * (large - small) / small
    return result


def _text_only(engine: Any, requests: Sequence[Any], max_new_tokens: int) -> list[str]:
    """The same questions with no audio block at all (system + user text), batched like the others."""
    import torch

    from audiomcq.prompts import SYSTEM_PROMPT, user_prompt

    model, processor = engine.loaded.model, engine.loaded.processor
    tok = processor.tokenizer
    out = []
    for start in range(0, len(requests), engine.spec.batch_size):
        chunk = requests[start : start + engine.spec.batch_size]
        texts = [
            processor.apply_chat_template(
                [
                    {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
                    {"role": "user", "content": [{"type": "text", "text": user_prompt(r.question, r.choices)}]},
                ],
                add_generation_prompt=True,
                tokenize=False,
            )
            for r in chunk
        ]
        batch = tok(texts, return_tensors="pt", padding=True, padding_side="left")
        with torch.inference_mode():
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
        out.extend(tok.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True))
    return out


def _filter_rss(work: Path, model: str, size: int) -> float:
    """Peak RSS (MiB) of a ``filter run`` process over ``size`` synthetic records (1 s silence, 2 new tokens)."""
    data = work / f"records-{size}.jsonl"
    with data.open("w") as f:
        for i in range(size):
            row = {"id": f"b{i}", "question": f"What is heard in clip {i % 97}?", "choices": ["one", "two", "three"],
                   "answer": "two", "audio_path": f"missing/{i}.wav"}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    cmd = [sys.executable, "-c", RSS_SCRIPT, "filter", "run", "--data", str(data), "--models", model, "--min-correct",
           "1", "--probes", "silence:1", "--chunk-size", "1024", "--batch-size", "256", "--max-new-tokens", "2",
           "--out", str(work / f"filter-{size}")]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    kb = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("MAXRSS_KB"))
    log.info("filter over %d records: %.0f s, peak RSS %.0f MiB", size, time.perf_counter() - start, kb / 1024)
    return kb / 1024
