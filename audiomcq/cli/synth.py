"""``audiomcq synth``: the synthetic audio MCQ corpus the demo and the tests train on."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audiomcq.cli.args import count, positive


def add_synth_commands(sub: Any) -> None:
    """Register ``synth``."""
    p = sub.add_parser("synth", help="generate the synthetic audio MCQ corpus (WAVs + AudioMCQ JSONL + ground truth)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n", type=positive, default=2000, help="training items")
    p.add_argument("--eval-n", type=count, help="held-out items (default n/10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text-share", type=float, default=0.3, help="share answerable from text alone by construction")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate a corpus."""
    from audiomcq.synth import generate

    s = generate(args.out, args.n, seed=args.seed, eval_n=args.eval_n, text_share=args.text_share)
    splits = ", ".join(f"{k} {v['count']} ({v['text_answerable']} text-answerable)" for k, v in s["splits"].items())
    print(f"synth: {splits}; speech {'on' if s['speech'] else 'off (espeak-ng missing)'} -> {args.out}")
    return 0
