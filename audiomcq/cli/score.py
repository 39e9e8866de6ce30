"""``audiomcq score``: a benchmark prediction file scored exactly like the benchmark's official script."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audiomcq.cli.args import BENCHMARK_NAMES
from audiomcq.errors import UsageError


def add_score_commands(sub: Any) -> None:
    """Register ``score``."""
    p = sub.add_parser(
        "score",
        help="score a benchmark prediction file exactly like the official script",
        description=(
            "Score predictions in the benchmark's own prediction format: MMAU (key model_output, also "
            "model_prediction), MMAR (answer_prediction, also model_prediction), MMSU (response), DCASE 2025 "
            "(a folder of question files with answer_prediction). Per-item verdicts and totals match the official "
            "scripts; 'strict' also counts the items they leave out (unparsed or missing predictions) as wrong. "
            "Accuracies are percentages."
        ),
    )
    p.add_argument("--benchmark", required=True, choices=BENCHMARK_NAMES)
    p.add_argument("--predictions", required=True, type=Path, help="prediction file (JSON list or JSONL)")
    p.add_argument("--output", type=Path, help="write the metrics JSON here")
    p.add_argument(
        "--mode",
        choices=["letter", "text"],
        help="MMSU only: official letter parsing (default) or MMAU-style text matching",
    )
    p.add_argument(
        "--extract-answer",
        action="store_true",
        help="take the <answer>...</answer> contents of each prediction first (the official scripts do not)",
    )
    p.set_defaults(func=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    """Score one prediction file and print the official-style table."""
    from audiomcq.benchmarks import get_benchmark
    from audiomcq.jsonio import write_json

    if args.mode and args.benchmark != "mmsu":
        raise UsageError(f"--mode is for mmsu only; {args.benchmark} is scored one way, as its official script does")
    options = {"mode": args.mode or "letter"} if args.benchmark == "mmsu" else {}
    bench = get_benchmark(args.benchmark, **options)
    result = bench.score(args.predictions, extract=args.extract_answer)
    if args.output:
        write_json(args.output, result)
    print(format_score_table(result))
    return 0


def format_score_table(result: dict[str, Any]) -> str:
    """A plain-text table of totals and breakdowns."""
    total, strict = result["total"], result["strict"]
    skipped = f"unparsed {total['unparsed']}, missing {total['missing']}"
    lines = [
        f"{result['benchmark']}: {result['predictions']}",
        _row("official", total) + f"  {skipped}",
        _row("strict (every item counted)", strict),
    ]
    for field, groups in result["breakdown"].items():
        lines.append(f"  by {field}:")
        for key, cell in groups.items():
            lines.append("  " + _row(key, cell))
    return "\n".join(lines)


def _row(label: str, cell: dict[str, Any]) -> str:
    return f"  {label[:40]:<40} {cell['accuracy']:6.2f}%  {cell['correct']:>5}/{cell['count']:<5}"
