"""``audiomcq bench eval``: the evaluation harness (batched engine, chunked parts, official prediction file and
scoring) against a per-sample ``generate`` loop over the same items, side by side in one run on the tiny model.

Harness and loop run interleaved, ``repeats`` times each; the speedup is taken per repetition and reported as the
median with its range, beside the FLOP-bound ceiling (the loop's time over the harness's FLOPs at this CPU's GEMM
rate: what batching could give if the batch ran every FLOP at the rate of the model's widest matmul).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from audiomcq.bench.measure import Spread, count_flops, gemm_case, interleaved, load_average, ratio


def bench_eval(work: str | Path, n: int = 64, max_new_tokens: int = 16, repeats: int = 3) -> dict[str, Any]:
    """Seconds for the harness and for the loop over ``n`` synthetic items, per dtype, as spreads over repeats."""
    import torch

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
    result: dict[str, Any] = {
        "items": n,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "load_before": load_average(),
        "by_dtype": {},
    }
    runs = itertools.count()
    raw = {}
    for dtype in ("float32", "bfloat16"):  # the same dtype on both sides
        engine = lazy_engine(path, batch_size=n, dtype=dtype)
        config = EvalConfig(batch_size=n, max_new_tokens=max_new_tokens, silent_control=False)
        loaded = engine().loaded

        def harness(engine: Any = engine, config: EvalConfig = config) -> None:
            # A fresh output directory per run: without parts to resume from, every run answers every item.
            evaluate_task(engine, get_task("synthetic"), data, work / "corpus", work / f"eval-{next(runs)}", config)

        def loop(loaded: Any = loaded) -> None:
            for record in read_records(data):
                _, wave = load_audio(record, work / "corpus")
                generate_batch(
                    loaded.model, loaded.processor, [(record.question, record.choices, wave)], max_new_tokens
                )

        text = loaded.model.config.get_text_config()
        gemm, gemm_flops = gemm_case(dtype, 4096, text.hidden_size, text.intermediate_size)
        flops = count_flops(harness)
        times = interleaved({"harness": harness, "loop": loop, "gemm": gemm}, repeats)
        raw[dtype] = times
        # Per repetition: the loop's time over the harness's FLOPs at the GEMM rate measured in that repetition.
        ceiling = [lp * gemm_flops / (flops * g) for lp, g in zip(times["loop"], times["gemm"], strict=True)]
        result["by_dtype"][dtype] = {
            "harness_s": Spread.of(times["harness"]).to_dict(),
            "loop_s": Spread.of(times["loop"]).to_dict(),
            "speedup": ratio(times, "loop", "harness").to_dict(),
            "gemm_gflops": Spread.of([gemm_flops / t / 1e9 for t in times["gemm"]]).to_dict(),
            "flop_ceiling": Spread.of(ceiling).to_dict(),
        }
    best = [
        min(t["loop"][r] for t in raw.values()) / min(t["harness"][r] for t in raw.values()) for r in range(repeats)
    ]
    result["best_vs_best_speedup"] = Spread.of(best).to_dict()
    result["load_after"] = load_average()
    return result
