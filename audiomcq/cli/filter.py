"""``audiomcq filter run|merge|benchmark``: audio-contribution filtering."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from audiomcq.cli.args import add_budget_flags, add_dtype_flag, add_shard_flag


def add_filter_commands(sub: Any) -> None:
    """Register ``filter run`` and ``filter merge``."""
    p = sub.add_parser(
        "filter", help="audio-contribution filtering: K models answer without the audio, vote weak/strong"
    )
    fsub = p.add_subparsers(dest="filter_command", title="filter commands", metavar="<filter-command>", required=True)
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
    add_shard_flag(r, "labels")
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
        shard=args.shard,
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
