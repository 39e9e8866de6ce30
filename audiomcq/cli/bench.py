"""``audiomcq bench filter|eval|train|serve|pipeline``: speed and memory targets, each ratio the median of
repeats with its range."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audiomcq.bench.measure import Spread, bench_work


def add_bench_commands(sub: Any) -> None:
    """Register ``bench`` and its benchmarks."""
    b = sub.add_parser("bench", help="speed and memory benchmarks, measured side by side in one run")
    bsub = b.add_subparsers(dest="bench_command", title="benchmarks", metavar="<bench-command>", required=True)
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
    bp = bsub.add_parser("pipeline", help="orchestration overhead of a local audiomcq-demo run")
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


def _s(cell: dict[str, float], unit: str = "x", digits: int = 2, of: str = "runs") -> str:
    """A stored ``Spread`` as ``median (min-max, runs)``."""
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
    from audiomcq.bench.filter import bench_filter

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
    from audiomcq.bench.train import bench_sweep, bench_train, sweep_configs

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
    from audiomcq.bench.eval import bench_eval

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
    from audiomcq.bench.pipeline import bench_pipeline

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
    from audiomcq.bench.serve import bench_serve

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


def _ms(spread: dict[str, float]) -> dict[str, float]:
    return {k: v * 1000 if k in ("median", "min", "max") else v for k, v in spread.items()}


def _switches(kernels: dict[str, Any]) -> str:
    return f"packing {'on' if kernels['packing'] else 'off'}, {kernels['attention']}, {kernels['loss']} loss"


def report_lines(r: dict[str, Any]) -> list[str]:
    """``bench_train``'s result as the lines ``audiomcq bench train`` prints."""
    from audiomcq.bench.corpus import MAX_LENGTH

    out = [f"model: {r['size']} ({r['params']['total'] / 1e6:.1f}M parameters) on {r['device']}"]
    for profile, runs in r["profiles"].items():
        c, s, g = r["corpora"][profile], runs["sft"], runs.get("grpo")
        t = c["tokens"]
        out.append(
            f"{profile} profile: {t['samples']} samples of {t['mean']:.0f} tokens ({t['min']}-{t['max']}; "
            f"{t['skipped']} over {MAX_LENGTH} skipped), {c['labels']:.0f} labelled, "
            f"{c['clip_seconds']:.1f} s clips"
        )
        mfu = ""
        if s["mfu"] is not None:
            pct = {k: v * 100 if k in ("median", "min", "max") else v for k, v in s["mfu_steps"].items()}
            mfu = f", MFU {Spread.from_dict(pct).show('%', 1, 'steps')} of {s['peak_tflops']:.0f} TFLOP/s"
        ckpt = ", gradient checkpointing" if s["gradient_checkpointing"] else ""
        out.append(
            f"  SFT  (batch {s['batch']}, {_switches(s['kernels'])}{ckpt}): "
            f"{Spread.from_dict(_ms(s['step_seconds'])).show(' ms/step', 0, 'steps')}, "
            f"{Spread.from_dict(s['tokens_per_second_steps']).show(' tokens/s', 0, 'steps')}{mfu}, "
            f"{s['memory_kind']} {s['memory_mib']:.0f} MiB"
        )
        if g is not None:
            rate = Spread.from_dict(g["rollout_tokens_per_second_steps"]).show(" rollout tokens/s", 0, "steps")
            out.append(
                f"  GRPO ({g['completions_per_step']} completions/step, {g['rollouts']} rollouts): "
                f"{Spread.from_dict(_ms(g['step_seconds'])).show(' ms/step', 0, 'steps')}, {rate}"
            )
    return out


def sweep_table(r: dict[str, Any]) -> list[str]:
    """``bench_sweep``'s result as one markdown table (medians over each run's timed steps, ms/step with range)."""
    rows = r["rows"]
    kind = rows[0]["memory_kind"]
    out = [
        (
            f"model: {r['size']} ({r['params']['total'] / 1e6:.1f}M parameters) on {r['device']}; "
            f"SFT {rows[0]['steps']} steps per row, medians over all but the first"
        ),
        *(
            f"{p}: {c['tokens']['mean']:.0f} tokens per sample, {c['labels']:.0f} labelled"
            for p, c in r["corpora"].items()
        ),
        f"| profile | batch | packing | attention | loss | ms/step | tokens/s | MFU | {kind} (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        k, ms = s["kernels"], _ms(s["step_seconds"])
        mfu = f"{s['mfu_steps']['median'] * 100:.1f}%" if s["mfu_steps"] else "n/a"
        out.append(
            f"| {s['profile']} | {s['batch']} | {'on' if k['packing'] else 'off'} | {k['attention']} | "
            f"{k['loss']} | {ms['median']:.0f} ({ms['min']:.0f}-{ms['max']:.0f}) | "
            f"{s['tokens_per_second_steps']['median']:,.0f} | {mfu} | {s['memory_mib']:,.0f} |"
        )
    return out
