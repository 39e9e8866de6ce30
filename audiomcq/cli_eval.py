"""CLI of benchmark evaluation: ``audiomcq eval``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_eval_commands(sub: Any) -> None:
    """Register ``eval`` on the top-level parser."""
    from audiomcq.evaluation.tasks import TASKS

    p = sub.add_parser("eval", help="a model on benchmark tasks: official prediction files, scores, silent control")
    p.add_argument("--model", required=True, help="model directory or s3:// prefix")
    p.add_argument("--tasks", default="", help=f"comma-separated NAME or NAME=METADATA ({', '.join(TASKS)})")
    p.add_argument("--data", type=Path, help="shorthand for --tasks synthetic=DATA (our JSONL records)")
    p.add_argument("--data-dir", type=Path, help="where a task's metadata has its usual name (default: audio root)")
    p.add_argument("--audio-root", action="append", default=[], metavar="[NAME=]PATH",
                   help="audio root for every task, or NAME=PATH for one (s3:// prefixes are synced)")  # fmt: skip
    p.add_argument("--ac-strong", action="append", default=[], metavar="NAME=IDS",
                   help="a task's AC-strong id list (from `filter benchmark`), scored alongside")  # fmt: skip
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--no-silence", action="store_true", help="skip the silent-audio control run")
    p.add_argument("--balanced", action="store_true", help="every question once per answer position")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--chunk-size", type=int, default=256, help="items per resumable part")
    p.add_argument("--shard", default="0/1", help="i/N: this run takes the items at positions p with p %% N == i")
    p.set_defaults(func=cmd_eval)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    from audiomcq.errors import AudioMCQError

    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise AudioMCQError(f"{what} {value!r}: expected NAME=PATH")
        out[name] = path
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate and print the table."""
    from audiomcq.errors import AudioMCQError
    from audiomcq.evaluation import EvalConfig, get_task, run_eval
    from audiomcq.storage import local_tree

    tasks: dict[str, str] = {}
    for item in filter(None, args.tasks.split(",")):
        name, _, path = item.partition("=")
        tasks[name] = path
    if args.data:
        tasks["synthetic"] = str(args.data)
    if not tasks:
        raise AudioMCQError("name at least one task (--tasks) or --data")
    shared = [r for r in args.audio_root if "=" not in r or r.startswith("s3://")]
    if len(shared) > 1:
        raise AudioMCQError("give one shared --audio-root; per task use NAME=PATH")
    named = _pairs([r for r in args.audio_root if r not in shared], "--audio-root")
    roots = {name: named.get(name, shared[0] if shared else None) for name in tasks}
    roots = {name: local_tree(root) if root else None for name, root in roots.items()}
    for name, path in tasks.items():
        if not path:
            base = args.data_dir or roots[name]
            if base is None:
                raise AudioMCQError(f"task {name}: give its metadata (NAME=PATH), --data-dir or --audio-root")
            tasks[name] = str(Path(base) / get_task(name).default_file)
    index, _, count = args.shard.partition("/")
    config = EvalConfig(args.batch_size, args.max_new_tokens, args.chunk_size, (int(index), int(count or 1)),
                        not args.no_silence, args.balanced)  # fmt: skip
    summary = run_eval(args.model, tasks, roots, args.out, config, _pairs(args.ac_strong, "--ac-strong"))
    from audiomcq.evaluation.harness import markdown

    print(markdown(summary), end="")
    return 0
