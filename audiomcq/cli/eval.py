"""CLI of benchmark evaluation: ``audiomcq eval``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audiomcq.cli.args import add_budget_flags, add_dtype_flag, add_fresh_flag, add_shard_flag, pairs


def add_eval_commands(sub: Any) -> None:
    """Register ``eval``."""
    from audiomcq.evaluation.tasks import TASKS

    p = sub.add_parser(
        "eval", help="evaluate a model on benchmark tasks: official prediction files, scores, silent control"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="model directory or s3:// prefix")
    which.add_argument(
        "--model-config",
        type=Path,
        help="YAML mapping of one model spec (an endpoint, its own prompt "
        "format, max_length, …; the keys of a `filter run --models-config` entry)",
    )
    p.add_argument("--tasks", default="", help=f"comma-separated NAME or NAME=METADATA ({', '.join(TASKS)})")
    p.add_argument("--data", type=Path, help="shorthand for --tasks synthetic=DATA (our JSONL records)")
    p.add_argument("--data-dir", type=Path, help="where a task's metadata has its usual name (default: audio root)")
    p.add_argument(
        "--audio-root",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="audio root for every task, or NAME=PATH for one (s3:// prefixes are synced)",
    )
    p.add_argument(
        "--ac-strong",
        action="append",
        default=[],
        metavar="NAME=IDS",
        help="a task's AC-strong id list (from `filter benchmark`), scored alongside",
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--no-silence", action="store_true", help="skip the silent-audio control run")
    p.add_argument("--balanced", action="store_true", help="every question once per answer position")
    p.add_argument("--batch-size", type=int, default=64)
    add_budget_flags(p)
    p.add_argument("--chunk-size", type=int, default=256, help="items per resumable part")
    add_dtype_flag(p)
    add_shard_flag(p)
    add_fresh_flag(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate and print the table."""
    from audiomcq.errors import AudioMCQError
    from audiomcq.evaluation import EvalConfig, get_task, run_eval
    from audiomcq.infra.storage import local_tree

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
    named = pairs([r for r in args.audio_root if r not in shared], "--audio-root")
    roots = {name: named.get(name, shared[0] if shared else None) for name in tasks}
    roots = {name: local_tree(root) if root else None for name, root in roots.items()}
    for name, path in tasks.items():
        if not path:
            base = args.data_dir or roots[name]
            if base is None:
                raise AudioMCQError(f"task {name}: give its metadata (NAME=PATH), --data-dir or --audio-root")
            tasks[name] = str(Path(base) / get_task(name).default_file)

    config = EvalConfig(
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        chunk_size=args.chunk_size,
        shard=args.shard,
        silent_control=not args.no_silence,
        balanced=args.balanced,
        dtype=args.dtype,
        budget_margin=args.budget_margin,
        max_length=args.max_length,
    )
    model: str | dict[str, Any] = args.model
    if args.model_config:
        import yaml

        model = yaml.safe_load(args.model_config.read_text())
        if not isinstance(model, dict) or "path" not in model:
            raise AudioMCQError(f"{args.model_config}: expected a YAML mapping of one model spec, with `path`")
    summary = run_eval(model, tasks, roots, args.out, config, pairs(args.ac_strong, "--ac-strong"), args.fresh)
    from audiomcq.evaluation.harness import markdown

    print(markdown(summary), end="")
    return 0
