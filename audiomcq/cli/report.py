"""``audiomcq report``: post-training runs and evaluations in the paper's views (a Table-5-style table and
accuracy-vs-step curves)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audiomcq.cli.args import add_fresh_flag, pairs
from audiomcq.errors import UsageError


def add_report_commands(sub: Any) -> None:
    """Register ``report``."""
    r = sub.add_parser("report", help="runs in the paper's views: Table-5-style table and accuracy-vs-step curves")
    r.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=RUN_DIR",
        help="a post-training run; every checkpoint is evaluated on its selection set",
    )
    r.add_argument("--eval", action="append", default=[], metavar="NAME=EVAL_DIR", help="`audiomcq eval` output")
    r.add_argument("--demo", type=Path, help="the demo's output folder: its runs, held-out split and audio")
    r.add_argument("--data", type=Path, help="selection set for every run (default: each run's own)")
    r.add_argument("--audio-root", help="the selection set's audio (a path or s3:// prefix)")
    r.add_argument("--max-new-tokens", type=int, default=256)
    r.add_argument("--out", required=True, type=Path)
    add_fresh_flag(r)
    r.set_defaults(func=cmd_report)


def demo_layout(demo: Path) -> dict[str, Any]:
    """The newest demo pipeline run's post-training runs (by paradigm), held-out labelled split and audio root."""
    from audiomcq.errors import AudioMCQError
    from audiomcq.jsonio import load_json

    roots = sorted((demo / "pipeline-root").glob("audiomcq-demo-*"), key=lambda p: p.stat().st_mtime)
    if not roots:
        raise AudioMCQError(f"{demo}: no demo pipeline run under pipeline-root/ (run `make demo` first)")
    root = roots[-1]
    runs = {load_json(s)["paradigm"]: s.parent for s in sorted(root.glob("*/post-train/run/summary.json"))}
    return {
        "runs": runs,
        "data": root / "acf-filter" / "labels" / "eval" / "labelled.jsonl",
        "audio_root": root / "synth" / "corpus" / "loop",
    }


def cmd_report(args: argparse.Namespace) -> int:
    """Select within each run, then write the report."""
    from audiomcq.evaluation import paper_report
    from audiomcq.evaluation.select import select_run

    runs, data, audio_root = dict(pairs(args.run, "--run")), args.data, args.audio_root
    if args.demo:
        layout = demo_layout(args.demo)
        runs = {**layout["runs"], **runs}
        data, audio_root = data or layout["data"], audio_root or layout["audio_root"]
    if runs and audio_root is None:
        raise UsageError("--run needs --audio-root (the selection set's audio)")
    if not runs and not args.eval:
        raise UsageError("nothing to report: give --run, --eval or --demo")
    selections = {
        name: select_run(
            run, audio_root, args.out / "select" / name, data, max_new_tokens=args.max_new_tokens, fresh=args.fresh
        )
        for name, run in runs.items()
    }
    path = paper_report.write(selections, paper_report.load_evals(pairs(args.eval, "--eval")), args.out)
    print(path.read_text(), end="")
    return 0
