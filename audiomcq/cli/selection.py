"""``audiomcq select``: the best checkpoint of a run, or among evaluation outputs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audiomcq.cli.args import add_fresh_flag
from audiomcq.errors import UsageError


def add_select_commands(sub: Any) -> None:
    """Register ``select``."""
    p = sub.add_parser("select", help="pick the best checkpoint: of a run (--run) or from evaluation outputs")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="a post-training run (dir or s3://): evaluate every checkpoint, pick one")
    what.add_argument("--evals", nargs="+", help="directories holding metrics.json (the demo's evaluations)")
    p.add_argument("--data", type=Path, help="--run: selection set (default <run>/data/selection.jsonl)")
    p.add_argument("--audio-root", help="--run: the selection set's audio (a path or s3:// prefix)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--out", required=True, type=Path)
    add_fresh_flag(p)
    p.set_defaults(func=cmd_select)


def cmd_select(args: argparse.Namespace) -> int:
    """Select the best checkpoint."""
    if args.run:
        from audiomcq.evaluation.select import select_run

        if args.audio_root is None:
            raise UsageError("--run needs --audio-root (the selection set's audio)")
        r = select_run(
            args.run, args.audio_root, args.out, args.data, max_new_tokens=args.max_new_tokens, fresh=args.fresh
        )
        print(f"select: {r['why']} -> {r['selected']['path']}")
        return 0
    from audiomcq.stages.demo import select_stage

    s = select_stage([str(e) for e in args.evals], str(args.out))
    print(f"select: {s['why']} -> {s['model']}")
    return 0
