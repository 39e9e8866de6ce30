"""``audiomcq bench filter``: the filter's speed and memory targets, measured side by side in one run.

1. Batched engine vs a per-sample ``generate`` loop (tiny model, real clips), in fp32 and in bf16 (same dtype on
   both sides), and each side in its fastest dtype.
2. Cost per sample of silent filtering with the shared silence prefix vs recomputing the silence for every sample
   vs the same prompts text-only, at the tiny width and at a random hidden-1024, 4-layer config.
3. Peak memory of one silent pass (h1024) as the batch grows: the shared prefix must not be held once per row.
4. Peak RSS of ``audiomcq filter run`` over 10k vs 100k synthetic records (streaming: memory must not grow).

On a shared machine one timing proves nothing, so every ratio is taken per repetition from cases run next to each
other (``audiomcq.bench.measure.interleaved``) and reported as the median with its range. Where FLOPs bound a ratio the
bench counts them (``torch.utils.flop_counter``) and reports the bound beside the measurement.
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

from audiomcq.bench.measure import Spread, count_flops, gemm_case, interleaved, load_average, ratio
from audiomcq.synth.audio import SR

log = logging.getLogger(__name__)
DTYPES = ("float32", "bfloat16")
WIDTHS = {"tiny (h128, 2 layers)": {"hidden": 128, "layers": 2}, "h1024, 4 layers": {"hidden": 1024, "layers": 4}}
PEAK_ROWS = (1, 16, 64)
RSS_SCRIPT = (
    "import resource, sys\nfrom audiomcq.cli import main\nrc = main(sys.argv[1:])\n"
    "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(rc)"
)
# Silent passes per batch size in a fresh process per prefix length; the kernel's peak-RSS mark is reset before
# each pass, so each peak is that pass's own (the prefix is built first, outside the measured passes, as a filter
# run builds it once). Median of three passes: the allocator's retained memory moves single peaks by tens of MiB.
PEAK_SCRIPT = """
import ctypes, gc, json, statistics, sys
import numpy as np
from audiomcq.inference import EngineSpec, Request, Sampling, make_engine
path, seconds, rows = sys.argv[1], [int(s) for s in sys.argv[2].split(",")], [int(r) for r in sys.argv[3].split(",")]
def mib(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key)) / 1024
def peak(run):
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back, so the base is what is really held
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = mib("VmRSS:")
    run()
    return mib("VmHWM:") - base
engine = make_engine(EngineSpec(path, batch_size=max(rows)))
out = {}
for s in seconds:
    silence = np.zeros(s * 16000, np.float32)
    ask = lambda k: [Request(f"What is heard in clip {i}?", ("a dog", "a bell", "rain"), silence) for i in range(k)]
    engine.generate(ask(2), Sampling(max_new_tokens=16))
    prefix = engine._prefixes[next(reversed(engine._prefixes))]
    held = sum(t.numel() * t.element_size() for layer in prefix.cache.layers for t in (layer.keys, layer.values))
    peaks = {k: statistics.median(peak(lambda: engine.generate(ask(k), Sampling(max_new_tokens=16))) for _ in range(3))
             for k in rows}
    out[s] = {"prefix_tokens": prefix.ids.shape[1], "prefix_mib": held / 2**20, "peak_mib": peaks}
sys.stdout.write("PEAK " + json.dumps(out) + "\n")
"""
SILENCES = (10, 30)  # seconds of silence: two prefix lengths, to show the batch's memory does not scale with it


def bench_filter(
    work: str | Path, n: int = 32, rss_sizes: Sequence[int] = (10_000, 100_000), repeats: int = 3
) -> dict[str, Any]:
    """Run every measurement (each timing ``repeats`` times, interleaved); returns the numbers (``audiomcq bench
    filter`` prints them)."""
    import torch

    from audiomcq.data.io import read_records
    from audiomcq.inference import Request
    from audiomcq.models.batch import load_waveform
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
    tiny = str(models[next(iter(WIDTHS))])
    clips = [Request(r.question, tuple(r.choices), load_waveform(r, work / "corpus")) for r in records]
    result: dict[str, Any] = {
        "samples": n,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "load_before": load_average(),
        "by_dtype": {},
    }
    # bf16 matmuls are several times faster on CPUs with AVX512-BF16/AMX, fp32 elsewhere
    raw = {dtype: _batched_vs_loop(tiny, clips, dtype, repeats) for dtype in DTYPES}
    result["by_dtype"] = {dtype: cell for dtype, (cell, _) in raw.items()}
    # Each side in its fastest dtype, per repetition (repetition r of every dtype ran at about the same time).
    best = [
        min(times["loop"][r] for _, times in raw.values()) / min(times["batched"][r] for _, times in raw.values())
        for r in range(repeats)
    ]
    result["best_vs_best_speedup"] = Spread.of(best).to_dict()
    silence = np.zeros(30 * SR, np.float32)
    silent = [Request(c.question, c.choices, silence) for c in clips]
    log.info("batched vs loop: %s", json.dumps(result["by_dtype"]))  # each part as it lands: the run is long
    result["silent_cost"] = {label: _silent_cost(str(path), silent, repeats) for label, path in models.items()}
    log.info("silent cost: %s", json.dumps(result["silent_cost"]))
    result["silent_peak"] = _silent_peak(str(models[list(WIDTHS)[-1]]), SILENCES, PEAK_ROWS)
    log.info("silent peak: %s", json.dumps(result["silent_peak"]))
    result["peak_rss_mb"] = {size: _filter_rss(work, tiny, size) for size in rss_sizes}
    small, large = (result["peak_rss_mb"][s] for s in (min(rss_sizes), max(rss_sizes)))
    result["rss_growth_pct"] = 100.0 * (large - small) / small
    result["load_after"] = load_average()
    return result


def _batched_vs_loop(path: str, clips: Sequence[Any], dtype: str, repeats: int) -> tuple[dict[str, Any], dict]:
    """The engine (one batch of all clips) vs a ``generate`` call per clip, interleaved with a fixed GEMM workload;
    with both sides' FLOPs and, per repetition, the FLOP-bound ceiling on the speedup: the loop's time over the time
    the batch's FLOPs would take at the GEMM rate measured in that same repetition."""
    from audiomcq.inference import EngineSpec, Sampling, make_engine
    from audiomcq.models.batch import generate_batch

    n, greedy = len(clips), Sampling(max_new_tokens=16)
    engine = make_engine(EngineSpec(path, batch_size=n, dtype=dtype))
    m, p = engine.loaded.model, engine.loaded.processor
    text = m.config.get_text_config()
    gemm, gemm_flops = gemm_case(dtype, 4096, text.hidden_size, text.intermediate_size)  # the prefill's MLP product
    cases: dict[str, Callable[[], Any]] = {
        "batched": lambda: engine.generate(clips, greedy),
        "loop": lambda: [generate_batch(m, p, [(c.question, c.choices, c.audio)], 16) for c in clips],
    }
    flops = {name: count_flops(fn) for name, fn in cases.items()}
    times = interleaved({**cases, "gemm": gemm}, repeats)
    floors = [flops["batched"] * t / gemm_flops for t in times["gemm"]]  # seconds at that repetition's GEMM rate
    cell = {
        "batched_s": Spread.of(times["batched"]).to_dict(),
        "loop_s": Spread.of(times["loop"]).to_dict(),
        "batched_speedup": ratio(times, "loop", "batched").to_dict(),
        "gflop_per_question": {name: f / n / 1e9 for name, f in flops.items()},
        "gemm_gflops": Spread.of([gemm_flops / t / 1e9 for t in times["gemm"]]).to_dict(),
        "flop_floor_s": Spread.of(floors).to_dict(),
        "flop_ceiling": Spread.of([lp / f for lp, f in zip(times["loop"], floors, strict=True)]).to_dict(),
        "share_of_gemm_rate": Spread.of([f / b for f, b in zip(floors, times["batched"], strict=True)]).to_dict(),
    }
    return cell, times


def _silent_cost(path: str, silent: Sequence[Any], repeats: int) -> dict[str, Any]:
    """Per-question cost of the silent pass three ways, interleaved, with each way's FLOPs (from one batch)."""
    from audiomcq.inference import EngineSpec, Sampling, make_engine

    n, batch, greedy = len(silent), 16, Sampling(max_new_tokens=16)
    shared = make_engine(EngineSpec(path, batch_size=batch))
    plain = make_engine(EngineSpec(path, batch_size=batch, shared_prefix=False))
    cases: dict[str, Callable[[Sequence[Any]], Any]] = {
        "shared": lambda reqs: shared.generate(reqs, greedy),  # the prefix is built in the warm-up, once
        "recomputed": lambda reqs: plain.generate(reqs, greedy),
        "text_only": lambda reqs: _text_only(plain, reqs, 16),
    }
    for fn in cases.values():  # warm-up on two questions (the recomputed pass is too slow to repeat in full)
        fn(silent[:2])
    times = interleaved({k: (lambda fn=fn: fn(silent)) for k, fn in cases.items()}, repeats, warmup=False)
    first = silent[:batch]
    flops = {k: count_flops(lambda fn=fn: fn(first)) / len(first) for k, fn in cases.items()}
    out: dict[str, Any] = {f"{k}_ms": Spread.of([1000 * t / n for t in v]).to_dict() for k, v in times.items()}
    out["recompute_over_shared"] = ratio(times, "recomputed", "shared").to_dict()
    out["shared_over_text_only"] = ratio(times, "shared", "text_only").to_dict()
    out["gflop_per_question"] = {k: f / 1e9 for k, f in flops.items()}
    out["flop_recompute_over_shared"] = flops["recomputed"] / flops["shared"]
    out["flop_shared_over_text_only"] = flops["shared"] / flops["text_only"]
    return out


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


def _silent_peak(path: str, seconds: Sequence[int], rows: Sequence[int]) -> dict[int, Any]:
    """Per silence length: the prefix's tokens and cache size, and the peak memory (MiB above the process's
    resident size before the pass) of one silent pass per batch size. A per-row copy of the prefix would add its
    cache size once per row; held once, the growth with the batch is the questions' own."""
    out = {}
    for s in seconds:
        cmd = [sys.executable, "-c", PEAK_SCRIPT, path, str(s), ",".join(map(str, rows))]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        cell = json.loads(next(line[5:] for line in done.stdout.splitlines() if line.startswith("PEAK ")))[str(s)]
        out[s] = {**cell, "peak_mib": {int(k): p for k, p in cell["peak_mib"].items()}}
    return out


def _filter_rss(work: Path, model: str, size: int) -> float:
    """Peak RSS (MiB) of a ``filter run`` process over ``size`` synthetic records (1 s silence, 2 new tokens)."""
    data = work / f"records-{size}.jsonl"
    with data.open("w") as f:
        for i in range(size):
            row = {
                "id": f"b{i}",
                "question": f"What is heard in clip {i % 97}?",
                "choices": ["one", "two", "three"],
                "answer": "two",
                "audio_path": f"missing/{i}.wav",
            }
            f.write(json.dumps(row) + "\n")
    cmd = [
        sys.executable,
        "-c",
        RSS_SCRIPT,
        "filter",
        "run",
        "--data",
        str(data),
        "--models",
        model,
        "--min-correct",
        "1",
        "--probes",
        "silence:1",
        "--chunk-size",
        "1024",
        "--batch-size",
        "256",
        "--max-new-tokens",
        "2",
        "--out",
        str(work / f"filter-{size}"),
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    kb = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("MAXRSS_KB"))
    log.info("filter over %d records: %.0f s, peak RSS %.0f MiB", size, time.perf_counter() - start, kb / 1024)
    return kb / 1024
