"""``audiomcq bench eval``: the evaluation harness (batched engine, chunked parts, official prediction file and
scoring) against a per-sample ``generate`` loop over the same items, side by side in one run on the tiny model."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any


def bench_eval(work: str | Path, n: int = 64, max_new_tokens: int = 16) -> dict[str, Any]:
    """Seconds for the harness and for the loop over ``n`` synthetic items (best of two harness runs)."""
    from audiomcq.data.io import read_records
    from audiomcq.evaluation import EvalConfig, evaluate_task, get_task
    from audiomcq.evaluation.harness import lazy_engine, load_audio
    from audiomcq.models.batch import generate_batch
    from audiomcq.models.tiny import TinySpec, build_tiny, save_tiny, tokenizer_texts
    from audiomcq.synth import generate

    work = Path(work)
    generate(work / "corpus", n, seed=9, eval_n=0)
    data = work / "corpus" / "train.jsonl"
    model, processor = build_tiny("qwen2_5_omni", tokenizer_texts([data]), TinySpec())
    path = save_tiny(model, processor, work / "model")
    result: dict[str, Any] = {"items": n, "by_dtype": {}}
    for dtype in ("float32", "bfloat16"):  # the same dtype on both sides
        engine = lazy_engine(path, batch_size=n, dtype=dtype)
        config = EvalConfig(batch_size=n, max_new_tokens=max_new_tokens, silent_control=False)
        harness = float("inf")
        for attempt in range(2):  # the first run also warms up; each starts without parts, so it answers all
            shutil.rmtree(work / f"eval-{attempt}", ignore_errors=True)
            start = time.perf_counter()
            evaluate_task(engine, get_task("synthetic"), data, work / "corpus", work / f"eval-{attempt}", config)
            harness = min(harness, time.perf_counter() - start)
        loaded = engine().loaded
        start = time.perf_counter()
        for record in read_records(data):
            _, wave = load_audio(record, work / "corpus")
            generate_batch(loaded.model, loaded.processor, [(record.question, record.choices, wave)], max_new_tokens)
        loop = time.perf_counter() - start
        result["by_dtype"][dtype] = {"harness_s": harness, "loop_s": loop, "speedup": loop / harness}
    cells = result["by_dtype"].values()
    result["best_vs_best_speedup"] = min(c["loop_s"] for c in cells) / min(c["harness_s"] for c in cells)
    return result
