"""Argument helpers every command shares: KEY=VALUE pairs, shards, counts, and the dtype, budget and --fresh
flags."""

from __future__ import annotations

import argparse

BENCHMARK_NAMES = ("mmau", "mmar", "mmsu", "dcase2025")  # the --benchmark choices of score and data


def add_fresh_flag(parser: argparse.ArgumentParser) -> None:
    """``--fresh``: a rerun into an old output otherwise refuses work another model or setting made."""
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="discard finished work in --out that another model or "
        "setting made (a rerun otherwise refuses it, naming what changed)",
    )


def add_dtype_flag(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """``--dtype``: the model weights' dtype, by default the checkpoint's own (bf16 for the real Qwen ones)."""
    from audiomcq.models.loading import DTYPES

    where = f" ({scope})" if scope else ""
    help = f"model dtype{where}: auto = the checkpoint's own, float32 on a CPU without bf16"
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help=help)


def add_budget_flags(parser: argparse.ArgumentParser) -> None:
    """``--max-new-tokens``, ``--budget-margin`` and ``--max-length``, shared by filtering and evaluation."""
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="generation budget; default: from the data (the longest answer in each model's tokens "
        "plus --budget-margin). An explicit value wins; answers it cuts are counted as truncated",
    )
    parser.add_argument("--budget-margin", type=int, default=16, help="tokens added to the data's longest answer")
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="model context in tokens (default: the checkpoint's max positions); longer records are "
        "skipped, counted as over_length and listed in over_length.jsonl",
    )


def pairs(values: list[str], what: str, form: str = "NAME=PATH", empty_ok: bool = False) -> dict[str, str]:
    """``KEY=VALUE`` flags as a mapping (``empty_ok``: an empty value is allowed, as in a label selector); a flag
    not in that form is a usage error."""
    from audiomcq.errors import UsageError

    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not (path or empty_ok):
            raise UsageError(f"{what} {value!r}: expected {form}")
        out[name] = path
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """``i/N`` -> (i, N); a bare ``i`` means ``i/1``. An argparse type: a malformed shard is a usage error."""
    index, sep, count = text.partition("/") if "/" in text else (text, "/", "1")
    if not sep or not index.isdigit() or not count.isdigit() or not 0 <= int(index) < int(count):
        raise argparse.ArgumentTypeError(f"--shard must look like i/N with 0 <= i < N, not {text!r}")
    return int(index), int(count)


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def size(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a count or fraction: {text!r}") from None


def add_shard_flag(p: argparse.ArgumentParser, verb: str = "takes") -> None:
    """``--shard i/N``: one of N runs over the same input, each with every N-th item."""
    p.add_argument(
        "--shard",
        default=(0, 1),
        type=parse_shard,
        help=f"i/N: this run {verb} the items at positions p with p %% N == i",
    )
