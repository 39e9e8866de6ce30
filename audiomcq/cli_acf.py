"""CLI of audio-contribution filtering (``audiomcq filter run|merge|benchmark``) and the benchmarks (``audiomcq bench
filter|train``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from audiomcq.cli_eval import add_budget_flags, add_dtype_flag
from audiomcq.timing import bench_work


def add_filter_commands(sub: Any) -> None:
    """Register ``filter run`` and ``filter merge``."""
    p = sub.add_parser(
        "filter", help="audio-contribution filtering: K models answer without the audio, vote weak/strong"
    )
    fsub = p.add_subparsers(dest="filter_command", required=True)
    r = fsub.add_parser("run", help="label a record file (resumable: rerun the same command after an interruption)")
    r.add_argument("--data", required=True, help="records to label: JSONL, JSON list or Parquet; a path or s3:// URI")
    r.add_argument("--audio-root", help="root of relative audio paths, or an s3:// prefix (synced to a local cache)")
    models = r.add_mutually_exclusive_group(required=True)
    models.add_argument("--models", nargs="+", help="filter model directories or s3:// prefixes (transformers)")
    models.add_argument(
        "--models-config",
        type=Path,
        help="YAML list of model specs (path, backend, name, dtype, "
        "prompt, system, max_length, …; see docs/filtering.md)",
    )
    r.add_argument(
        "--probes", nargs="+", default=["silence:30"], help="first = the paper's probe (default silence:30)"
    )
    r.add_argument("--min-correct", type=int, default=2, help="weak if at least this many models are right (2 of 3)")
    r.add_argument("--rule", default="paper", help="which rule variant sets the labels (default: the paper's)")
    r.add_argument("--samples", type=int, default=1, help="answers per model and probe (> 1 needs --temperature)")
    r.add_argument("--temperature", type=float, default=0.0)
    add_budget_flags(r)
    r.add_argument("--chunk-size", type=int, default=256, help="records per resumable part")
    r.add_argument("--batch-size", type=int, default=64)
    add_dtype_flag(r, "with --models")
    r.add_argument("--shard", default="0/1", help="i/N: this run labels the records at positions p with p %% N == i")
    r.add_argument("--out", required=True, help="output directory, or an s3:// prefix (published when done)")
    r.add_argument(
        "--work",
        type=Path,
        help="scratch directory for S3 inputs and outputs (default: one of this "
        "output's own under the staging cache, AUDIOMCQ_STAGING)",
    )
    r.add_argument(
        "--fresh",
        action="store_true",
        help="discard finished parts that another model or setting "
        "made (a rerun otherwise refuses them, naming what changed)",
    )
    r.set_defaults(func=cmd_filter_run)
    m = fsub.add_parser("merge", help="merge shard outputs (in shard order) into one labelled set and its stats")
    m.add_argument("shards", nargs="+", type=Path, help="the shard output directories, shard 0 first")
    m.add_argument("--out", required=True, type=Path)
    m.set_defaults(func=cmd_filter_merge)

    k = fsub.add_parser("benchmark", help="a benchmark's AC-strong subset and zero-audio-contribution report")
    k.add_argument("--benchmark", required=True, choices=["mmau", "mmar", "mmsu"])
    k.add_argument("--data", required=True, type=Path, help="the benchmark's metadata file")
    k.add_argument("--audio-root", type=Path, help="the benchmark's audio (for the with-audio control)")
    kmodels = k.add_mutually_exclusive_group(required=True)
    kmodels.add_argument("--models", nargs="+", help="filter model directories")
    kmodels.add_argument("--models-config", type=Path, help="YAML list of model specs (see docs/filtering.md)")
    k.add_argument("--probes", nargs="+", default=["silence:30"])
    k.add_argument("--min-correct", type=int, default=2)
    k.add_argument("--batch-size", type=int, default=64)
    add_budget_flags(k)
    k.add_argument("--out", required=True, type=Path)
    k.set_defaults(func=cmd_filter_benchmark)

    b = sub.add_parser("bench", help="speed and memory benchmarks, measured side by side in one run")
    bsub = b.add_subparsers(dest="bench_command", required=True)
    bf = bsub.add_parser("filter", help="batched vs per-sample, shared vs recomputed silence vs text-only, RSS")
    bf.add_argument("--work", type=Path, default=Path("out/bench-filter"))
    bf.add_argument("--samples", type=int, default=32)
    bf.add_argument("--rss-records", type=int, nargs=2, default=[10_000, 100_000], metavar=("SMALL", "LARGE"))
    bf.add_argument("--repeats", type=_repeats, default=3, help="interleaved repetitions of every timing (>= 3)")
    bf.add_argument(
        "--threads",
        type=int,
        help="torch threads (default torch's: one per core); 1 keeps a shared "
        "machine's other load from stalling the second thread at every parallel op",
    )
    bf.set_defaults(func=cmd_bench_filter)
    bp = bsub.add_parser("pipeline", help="orchestration overhead of a local audiomcq-post-training run")
    bp.add_argument("--work", type=Path, default=Path("out/bench-pipeline"))
    bp.add_argument("--recipe", default="demo")
    bp.add_argument("--repeats", type=_repeats, default=3, help="whole runs to take the median over (>= 3)")
    bp.set_defaults(func=cmd_bench_pipeline)
    be = bsub.add_parser("eval", help="the evaluation harness vs a per-sample generate loop (tiny model)")
    be.add_argument("--work", type=Path, default=Path("out/bench-eval"))
    be.add_argument("--items", type=int, default=64)
    be.add_argument("--repeats", type=_repeats, default=3, help="interleaved repetitions of every timing (>= 3)")
    be.add_argument("--threads", type=int, help="torch threads (default torch's: one per core)")
    be.set_defaults(func=cmd_bench_eval)
    bt = bsub.add_parser(
        "train",
        help="step time, tokens/s, MFU and peak memory of SFT, rollout tokens/s of GRPO; "
        "several values of a switch sweep SFT alone and print one table",
    )
    bt.add_argument("--work", type=Path, default=Path("out/bench-train"))
    bt.add_argument("--steps", type=int, default=20)
    bt.add_argument("--size", choices=["tiny", "3b"], default="tiny", help="3b: Qwen2.5-Omni-3B thinker shape (GPU)")
    bt.add_argument("--peak-tflops", type=float, help="the device's peak (default: detected GPU's dense bf16)")
    bt.add_argument(
        "--profile",
        nargs="+",
        choices=["synthetic", "audiomcq"],
        default=["synthetic"],
        help="sample lengths: the demo's short ones, or AudioMCQ's (30 s clips, CoT answers)",
    )
    bt.add_argument("--batch", type=int, nargs="+", help="SFT batch size(s) (default: the size's own)")
    bt.add_argument("--packing", nargs="+", choices=["off", "on"], default=["off"], help="sft.kernels.packing")
    bt.add_argument(
        "--attention",
        nargs="+",
        default=["sdpa"],
        help="sft.kernels.attention (sdpa, eager, flash_attention_2, flash_attention_3, varlen)",
    )
    bt.add_argument("--loss", nargs="+", choices=["fused", "full"], default=["fused"], help="sft.kernels.loss")
    bt.add_argument("--no-checkpointing", action="store_true", help="GPU: no gradient checkpointing")
    bt.add_argument("--sft-only", action="store_true", help="skip the GRPO part")
    bt.set_defaults(func=cmd_bench_train)
    bs = bsub.add_parser(
        "serve", help="the model server under concurrent clients: latency and throughput (tiny model)"
    )
    bs.add_argument("--work", type=Path, default=Path("out/bench-serve"))
    bs.add_argument("--clients", type=int, default=32)
    bs.add_argument("--seconds", type=float, default=30.0)
    bs.add_argument("--max-batch-size", type=int, default=8, help="the server's micro-batch limit (1: no batching)")
    bs.add_argument("--max-wait-ms", type=float, default=10.0)
    bs.set_defaults(func=cmd_bench_serve)


def model_entries(models: list[str] | None, config: Path | None, dtype: str = "auto") -> list[Any]:
    """The filter models: directories from ``--models``, or the spec list of ``--models-config``."""
    from audiomcq.errors import AudioMCQError

    if models:
        return [{"path": m, "dtype": dtype} for m in models]
    assert config is not None
    entries = yaml.safe_load(config.read_text())
    if not isinstance(entries, list) or not entries or not all(isinstance(e, (dict, str)) for e in entries):
        raise AudioMCQError(f"{config}: expected a YAML list of model specs (mappings with at least `path`)")
    return entries


def parse_shard(text: str) -> tuple[int, int]:
    """``i/N`` -> (i, N)."""
    index, sep, count = text.partition("/")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise argparse.ArgumentTypeError(f"--shard must look like i/N with 0 <= i < N, not {text!r}")
    return int(index), int(count)


def cmd_filter_run(args: argparse.Namespace) -> int:
    """Run ACF and print the label counts and, with ground truth, each rule's agreement."""
    from audiomcq.acf import FilterConfig
    from audiomcq.acf.run import run_filter_uri

    models = model_entries(args.models, args.models_config, args.dtype)
    config = FilterConfig(
        probes=tuple(args.probes),
        min_correct=args.min_correct,
        label_rule=args.rule,
        samples=args.samples,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        shard=parse_shard(args.shard),
        budget_margin=args.budget_margin,
        max_length=args.max_length,
    )
    _print(run_filter_uri(args.data, models, args.audio_root, args.out, config, args.work, args.fresh), args.out)
    return 0


def cmd_filter_benchmark(args: argparse.Namespace) -> int:
    """Filter a benchmark and print its zero-audio-contribution table."""
    from audiomcq.acf import FilterConfig
    from audiomcq.acf.benchmark import filter_benchmark, zero_ac_markdown

    config = FilterConfig(
        probes=tuple(args.probes),
        min_correct=args.min_correct,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        budget_margin=args.budget_margin,
        max_length=args.max_length,
    )
    models = model_entries(args.models, args.models_config)
    report = filter_benchmark(args.benchmark, args.data, models, args.audio_root, args.out, config)
    print(zero_ac_markdown(report))
    return 0


def cmd_filter_merge(args: argparse.Namespace) -> int:
    """Merge shards."""
    from audiomcq.acf.run import merge_shards

    _print(merge_shards(args.shards, args.out), args.out)
    return 0


def _print(stats: dict[str, Any], out: Path) -> None:
    print(f"filter: {stats['weak']} weak / {stats['strong']} strong ({stats['rule']}) -> {out}")
    for key, what in (
        ("audio_corrupt", "with audio no model can hear (labelled in silence only)"),
        ("audio_trimmed", "with audio longer than 30 s (heard cut to the first 30 s)"),
    ):
        if stats.get(key):
            print(f"  {stats[key]} records {what}")
    if stats.get("over_length"):
        print(f"  {stats['over_length']} records too long for a model's context: unlabelled, see over_length.jsonl")
    for model, n in (stats.get("truncated") or {}).items():
        if n:
            budget = (stats.get("budgets") or {}).get(model, {}).get("max_new_tokens")
            print(f"  {model}: {n} answers hit the generation budget ({budget} tokens) and were cut")
    for rule, q in (stats.get("ground_truth") or {}).items():
        shares = (("agreement", "agreement"), ("weak precision", "weak_precision"), ("recall", "weak_recall"))
        print(f"  {rule}: " + ", ".join(f"{label} {_percent(q[key])}" for label, key in shares))


def _percent(value: float | None) -> str:
    """A share for a summary line: ``12.5%``, or ``n/a`` where nothing was measured (never ``None%``)."""
    from audiomcq.formats import pct

    return "n/a" if value is None else f"{pct(value)}%"


def _s(cell: dict[str, float], unit: str = "x", digits: int = 2, of: str = "runs") -> str:
    """A stored ``Spread`` as ``median (min-max, runs)``."""
    from audiomcq.timing import Spread

    return Spread.from_dict(cell).show(unit, digits, of)


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _repeats(text: str) -> int:
    """``--repeats``: at least 3, since a ratio from one or two runs on a shared machine is not evidence."""
    if not text.isdigit() or int(text) < 3:
        raise argparse.ArgumentTypeError(f"--repeats must be a whole number >= 3, not {text!r}")
    return int(text)


def _load(r: dict[str, Any]) -> str:
    return (
        f"{r['threads']} torch threads; 1-min load average {r['load_before']:.2f} before, "
        f"{r['load_after']:.2f} after (other processes skew every timing)"
    )


def cmd_bench_filter(args: argparse.Namespace) -> int:
    """Print the filter benchmark against its targets: medians of interleaved repetitions, with their range."""
    from audiomcq.bench_filter import bench_filter

    bench_work(args.work)  # a fresh run, not a resume of the last one
    _threads(args.threads)
    r = bench_filter(args.work, args.samples, args.rss_records, args.repeats)
    per = 1000 / r["samples"]
    print(f"bench filter: {r['samples']} questions, {r['repeats']} interleaved repetitions; {_load(r)}")
    for dtype, c in r["by_dtype"].items():
        batched, loop = (
            _s({**c[k], **{q: c[k][q] * per for q in ("median", "min", "max")}}, " ms", 1)
            for k in ("batched_s", "loop_s")
        )
        print(f"{dtype}: batched {batched} per question; per-sample loop {loop}")
        g, floor, share = c["gflop_per_question"], c["flop_floor_s"], c["share_of_gemm_rate"]
        print(
            f"  FLOPs per question: batched {g['batched']:.3f} G, loop {g['loop']:.3f} G; at the {dtype} GEMM rate "
            f"measured beside them ({_s(c['gemm_gflops'], ' GFLOP/s', 0)}) the batch needs >= "
            f"{floor['median'] * per:.2f} ms per question; it runs at {100 * share['median']:.0f}% of that rate "
            f"({100 * share['min']:.0f}-{100 * share['max']:.0f}%)"
        )
        print(
            f"  batched engine vs per-sample loop, both {dtype}: {_s(c['batched_speedup'])} (target >= 8x; "
            f"FLOP-bound ceiling {_s(c['flop_ceiling'], 'x', 1)})"
        )
    print(f"  batched vs per-sample loop, each in its fastest dtype: {_s(r['best_vs_best_speedup'])} (reported)")
    for label, c in r["silent_cost"].items():
        shared, recomputed, text = (_s(c[k], " ms", 1) for k in ("shared_ms", "recomputed_ms", "text_only_ms"))
        print(f"{label}: per question {shared} shared silence, {recomputed} recomputed, {text} text-only")
        g = c["gflop_per_question"]
        print(
            f"  FLOPs per question: shared {g['shared']:.3f} G, recomputed {g['recomputed']:.3f} G, "
            f"text-only {g['text_only']:.3f} G"
        )
        print(
            f"  {label}: recomputed / shared silence: {_s(c['recompute_over_shared'])} (target >= 8x; "
            f"FLOP ratio {c['flop_recompute_over_shared']:.2f}x)"
        )
        target = "<= 1.15x" if "1024" in label else "none at this width"
        print(
            f"  {label}: shared silence / text-only: {_s(c['shared_over_text_only'])} (target {target}; "
            f"FLOP ratio {c['flop_shared_over_text_only']:.2f}x)"
        )
    for seconds, peak in r["silent_peak"].items():
        rows = sorted(peak["peak_mib"])
        peaks = ", ".join(f"{peak['peak_mib'][k]:.0f} MiB at batch {k}" for k in rows)
        print(
            f"silent pass, h1024, {seconds} s silence ({peak['prefix_tokens']} prefix tokens, cache "
            f"{peak['prefix_mib']:.1f} MiB held once): peak memory {peaks} (median of 3; a copy of the prefix per "
            f"row would add {peak['prefix_mib'] * rows[-1]:.0f} MiB at batch {rows[-1]})"
        )
    small, large = sorted(r["peak_rss_mb"])
    print(
        f"peak RSS: {r['peak_rss_mb'][small]:.0f} MiB at {small} records, {r['peak_rss_mb'][large]:.0f} MiB at {large}"
    )
    print(f"  RSS growth {small} -> {large} records: {r['rss_growth_pct']:+.1f}% (target <= +10%)")
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    """Print the training benchmark: medians over the timed steps, with their range; a sweep as one table."""
    from audiomcq.bench_train import bench_sweep, bench_train, report_lines, sweep_configs, sweep_table

    switches = sweep_configs(["-"], args.batch or [None], args.packing, args.attention, args.loss)
    bench_work(args.work)  # a fresh run, not a resume of the last one
    if len(switches) == 1:  # one SFT setting: each profile's SFT (and GRPO) in full
        one = switches[0]
        r = bench_train(
            args.work,
            args.steps,
            args.size,
            args.peak_tflops,
            one["batch"],
            not args.no_checkpointing,
            not args.sft_only,
            tuple(args.profile),
            one["kernels"],
        )
        print("\n".join(report_lines(r)))
        return 0
    configs = sweep_configs(args.profile, args.batch or [None], args.packing, args.attention, args.loss)
    r = bench_sweep(args.work, args.steps, args.size, args.peak_tflops, configs, not args.no_checkpointing)
    print("\n".join(sweep_table(r)))
    return 0


def cmd_bench_eval(args: argparse.Namespace) -> int:
    """Print the evaluation benchmark against its target: medians of interleaved repetitions, with their range."""
    from audiomcq.bench_eval import bench_eval

    _threads(args.threads)
    r = bench_eval(args.work, args.items, repeats=args.repeats)
    per = 1000 / r["items"]
    print(f"bench eval: {r['items']} items, {r['repeats']} interleaved repetitions; {_load(r)}")
    for dtype, c in r["by_dtype"].items():
        harness, loop = (
            _s({**c[k], **{q: c[k][q] * per for q in ("median", "min", "max")}}, " ms", 1)
            for k in ("harness_s", "loop_s")
        )
        print(f"{dtype}: harness {harness} per item; per-sample loop {loop}")
        print(
            f"  batched harness vs per-sample loop, both {dtype}: {_s(c['speedup'])} (target >= 8x; FLOP-bound "
            f"ceiling {_s(c['flop_ceiling'], 'x', 1)} at {c['gemm_gflops']['median']:.0f} GFLOP/s)"
        )
    print(f"  each in its fastest dtype: {_s(r['best_vs_best_speedup'])}")
    return 0


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    """Print the pipeline overhead against its target: the median over repeated runs, with its range."""
    from audiomcq.bench_pipeline import bench_pipeline

    bench_work(args.work)  # a fresh run, not a resume of the last one
    r = bench_pipeline(args.work, args.recipe, repeats=args.repeats)
    print(
        f"{r['recipe']}, median of {r['repeats']} runs: {r['tasks']:.0f} tasks, wall {r['wall_s']:.0f} s, stages "
        f"computing {r['busy_s']:.0f} s (task compute {r['task_compute_s']:.0f} s, overlapped); 1-min load "
        f"average {r['load_before']:.2f} before, {r['load_after']:.2f} after"
    )
    print(
        f"  orchestration overhead: {r['overhead_s']:.1f} s = {_s(r['overhead_pct_spread'], '%', 1)} of compute "
        f"(target <= 5%)"
    )
    return 0


def cmd_bench_serve(args: argparse.Namespace) -> int:
    """Print the serving benchmark."""
    from audiomcq.bench_serve import bench_serve

    bench_work(args.work)  # a fresh run, not a resume of the last one
    r = bench_serve(args.work, args.clients, args.seconds, args.max_batch_size, args.max_wait_ms)
    print(
        f"serve: {r['clients']} clients for {r['seconds']:.0f} s, max batch {r['max_batch_size']}: "
        f"{r['requests']} requests, {r['failures']} failures"
    )
    print(
        f"  latency p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms; throughput {r['throughput_rps']:.1f} req/s; "
        f"mean batch {r['mean_batch']:.1f}"
    )
    return 0
