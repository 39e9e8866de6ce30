"""``audiomcq``: the one entry point for users, images and pipeline components.

Every subcommand reads and writes files, prints a one-line summary at the end, and exits non-zero with one clear
line (no traceback) on bad input. Heavy imports happen inside the command that needs them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from audiomcq import __version__
from audiomcq.errors import AudioMCQError, UsageError

log = logging.getLogger("audiomcq")


def _commands() -> list:
    """Every command, in the order ``audiomcq --help`` lists them: one registrar per module of this package."""
    from audiomcq.cli.bench import add_bench_commands
    from audiomcq.cli.data import add_data_commands
    from audiomcq.cli.demo import add_demo_commands
    from audiomcq.cli.eval import add_eval_commands
    from audiomcq.cli.export import add_export_commands
    from audiomcq.cli.fetch import add_fetch_commands
    from audiomcq.cli.filter import add_filter_commands
    from audiomcq.cli.generate import add_generate_commands
    from audiomcq.cli.pipeline import add_pipeline_commands
    from audiomcq.cli.promote import add_promote_commands
    from audiomcq.cli.prompt import add_prompt_commands
    from audiomcq.cli.query import add_query_commands
    from audiomcq.cli.report import add_report_commands
    from audiomcq.cli.score import add_score_commands
    from audiomcq.cli.selection import add_select_commands
    from audiomcq.cli.serve import add_serve_commands
    from audiomcq.cli.synth import add_synth_commands
    from audiomcq.cli.train import add_train_commands

    return [
        add_score_commands,
        add_data_commands,
        add_prompt_commands,
        add_filter_commands,
        add_synth_commands,
        add_export_commands,
        add_train_commands,
        add_select_commands,
        add_serve_commands,
        add_query_commands,
        add_pipeline_commands,
        add_demo_commands,
        add_eval_commands,
        add_report_commands,
        add_generate_commands,
        add_bench_commands,
        add_promote_commands,
        add_fetch_commands,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the subcommand, turn user errors into one line on stderr."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for commands that relaunch themselves (train)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.log_level != "error":  # progress of long commands shows at the default level, not the rest of INFO
        logging.getLogger("audiomcq.progress").setLevel(logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:  # a usage error, like argparse's own: exit 2
        print(f"audiomcq: error: {exc}", file=sys.stderr)
        return 2
    except AudioMCQError as exc:  # bad input: one line, exit 1
        print(f"audiomcq: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # unreadable input or unwritable output: the message names the path
        print(f"audiomcq: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except RecursionError:
        print("audiomcq: error: input nested too deeply to parse", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("audiomcq: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The full command tree (also used to render --help in docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="audiomcq",
        description=(
            "Audio-contribution-aware post-training of audio LLMs (AudioMCQ): data, filtering, training, "
            "evaluation and serving, from a laptop to a Kubernetes cluster."
        ),
    )
    parser.add_argument("--version", action="version", version=f"audiomcq {__version__}")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(title="commands", metavar="<command>")
    for add in _commands():
        add(sub)
    return parser
