"""``audiomcq data validate|convert|allocate|balance``: MCQ records checked, converted, allocated to paradigms and
position-balanced."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from audiomcq.cli.args import BENCHMARK_NAMES, count, positive, size
from audiomcq.errors import AudioMCQError, UsageError

log = logging.getLogger("audiomcq")


def add_data_commands(sub: Any) -> None:
    """Register ``data`` and its subcommands."""
    p = sub.add_parser("data", help="validate, convert, allocate and balance MCQ data")
    dsub = p.add_subparsers(title="data commands", metavar="<data-command>", required=True)

    v = dsub.add_parser(
        "validate",
        help="check a record file against the strict training rules",
        description="Check every record; strict mode stops at the first bad one, lenient mode quarantines them.",
    )
    v.add_argument("input", type=Path, help="record file (AudioMCQ JSONL)")
    v.add_argument(
        "--audio-root",
        type=Path,
        help="also decode each record's audio file under this folder: missing, "
        "unreadable, empty, too short (< 0.1 s), NaN/inf or absurd samples make it bad",
    )
    v.add_argument(
        "--long-audio",
        choices=["refuse", "trim"],
        default="refuse",
        help="with --audio-root, a clip longer than the models' 30 s window: a bad record (refuse), or "
        "kept and counted, the models hearing its first 30 s (trim)",
    )
    v.add_argument("--lenient", action="store_true", help="quarantine bad records instead of failing")
    v.add_argument(
        "--quarantine",
        type=Path,
        help="quarantine file (default: <input name>.quarantine.jsonl beside --output, else in the current folder)",
    )
    v.add_argument("--output", type=Path, help="write the valid records here")
    v.add_argument("--max-length", type=int, help="also count the records over this many tokens for --model")
    v.add_argument("--model", help="with --max-length: the model directory whose processor counts the tokens")
    v.add_argument("--sft", action="store_true", help="with --max-length: count the SFT answer too (as SFT does)")
    v.set_defaults(func=cmd_validate)

    c = dsub.add_parser(
        "convert",
        help="load a benchmark file as MCQ records (problems reported, nothing dropped)",
        description="Convert MMAU/MMAR/MMSU/DCASE metadata to AudioMCQ JSONL records, reporting validation problems.",
    )
    c.add_argument("--benchmark", required=True, choices=BENCHMARK_NAMES)
    c.add_argument("--input", required=True, type=Path, help="benchmark metadata file or folder")
    c.add_argument("--output", required=True, type=Path, help="record JSONL to write")
    c.add_argument("--audio-root", type=Path, help="report items whose audio file is missing under this folder")
    c.add_argument("--problems", type=Path, help="write per-item problems as JSON here")
    c.set_defaults(func=cmd_convert)

    a = dsub.add_parser(
        "allocate",
        help="split labelled records into SFT and GRPO sets for a paradigm",
        description="Deterministic SFT/GRPO allocation (disjoint), optional option-shuffle augmentation and a "
        "leakage check against evaluation sets. Writes sft.jsonl, rl.jsonl and allocation.json.",
    )
    a.add_argument("--input", required=True, type=Path, help="records labelled weak/strong")
    a.add_argument("--paradigm", required=True, choices=_paradigms())
    a.add_argument("--sft-size", type=size, help="count, or fraction of all records (default: |weak|)")
    a.add_argument("--rl-size", type=count, help="cap on the GRPO pool")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--augment", type=positive, default=1, help="copies per question with shuffled options (paper: 4)")
    a.add_argument(
        "--eval",
        nargs=2,
        action="append",
        metavar=("BENCHMARK", "FILE"),
        default=[],
        help="refuse splits sharing an audio asset with this evaluation set (repeatable)",
    )
    a.add_argument("--audio-root", type=Path, help="training audio root (enables content-hash leakage checks)")
    a.add_argument("--eval-audio-root", type=Path, help="evaluation audio root (for content-hash leakage checks)")
    a.add_argument("--out-dir", required=True, type=Path)
    a.set_defaults(func=cmd_allocate)

    b = dsub.add_parser(
        "balance",
        help="build a position-balanced selection set (each answer at every position)",
        description="Rotate each question's choices so the answer appears once at every position "
        "(MMAU-test-mini -> 3,974 items). Output stays in the benchmark's own format.",
    )
    b.add_argument("--benchmark", required=True, choices=BENCHMARK_NAMES)
    b.add_argument("--input", required=True, type=Path)
    b.add_argument("--output", required=True, type=Path)
    b.set_defaults(func=cmd_balance)


def _paradigms() -> tuple[str, ...]:
    from audiomcq.data.allocation import PARADIGMS

    return PARADIGMS


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a record file; exit 1 if any record is bad (also in lenient mode, after quarantining)."""
    from audiomcq.data.io import RecordReader, write_records

    quarantine = args.quarantine or (args.output.parent if args.output else Path.cwd()) / (
        args.input.name + ".quarantine.jsonl"
    )
    if (args.max_length is None) != (args.model is None):
        raise UsageError("--max-length and --model go together (the model's processor counts the tokens)")
    reader = RecordReader(
        args.input,
        strict=not args.lenient,
        quarantine=quarantine,
        audio_root=args.audio_root,
        long_audio=args.long_audio,
    )
    records: list[Any] = []
    valid = (records.append(r) or r for r in reader) if args.max_length else iter(reader)  # kept only when counted
    if args.output:
        write_records(args.output, valid)
    else:
        for _ in valid:
            pass
    print(reader.report.summary())
    over = _over_length(records, args) if args.max_length else []
    return 1 if reader.report.quarantined or over else 0


def _over_length(records: list[Any], args: argparse.Namespace) -> list[str]:
    """Print and return the ids of records that a run with ``--max-length`` would skip."""
    from audiomcq.models import load_model
    from audiomcq.models.batch import sft_target
    from audiomcq.models.lengths import token_counts

    processor = load_model(args.model).processor
    eos = processor.tokenizer.eos_token
    target = (lambda r: sft_target(r.answer, eos)) if args.sft else None
    counts = list(token_counts(processor, records, args.audio_root or args.input.parent, target))
    over = [(r.id, n) for r, n in counts if n is not None and n > args.max_length]
    unreadable = [r.id for r, n in counts if n is None]
    longest = max((n for _, n in counts if n is not None), default=0)
    print(
        f"{len(over)} of {len(counts)} records over {args.max_length} tokens for {args.model} "
        f"(longest {longest}); {len(unreadable)} with unreadable audio"
    )
    for rid, n in over:
        print(f"  over: {rid} ({n} tokens)")
    for rid in unreadable:
        print(f"  unreadable audio: {rid}")
    return [rid for rid, _ in over] + unreadable


def cmd_convert(args: argparse.Namespace) -> int:
    """Benchmark metadata -> records; every item kept, problems counted and optionally written out."""
    from audiomcq.benchmarks import get_benchmark
    from audiomcq.data.io import write_records
    from audiomcq.jsonio import write_json

    loaded = get_benchmark(args.benchmark).load(args.input, audio_root=args.audio_root)
    write_records(args.output, loaded.records)
    if args.problems:
        write_json(args.problems, {rid: [str(p) for p in probs] for rid, probs in loaded.problems.items()})
    print(loaded.summary())
    return 0


def cmd_allocate(args: argparse.Namespace) -> int:
    """Allocate, augment, guard against leakage, write the splits and a report."""
    from audiomcq.benchmarks import get_benchmark
    from audiomcq.data.allocation import allocate, find_leakage, shuffle_options
    from audiomcq.data.io import read_records, write_records
    from audiomcq.jsonio import write_json

    records = read_records(args.input)
    alloc = allocate(records, args.paradigm, sft_size=args.sft_size, rl_size=args.rl_size, seed=args.seed)
    for name, path in args.eval:
        leaks = find_leakage(
            alloc.sft + alloc.rl,
            get_benchmark(name).load(path).records,
            train_root=args.audio_root,
            eval_root=args.eval_audio_root,
        )
        if leaks:
            raise AudioMCQError(
                f"{len(leaks)} audio asset(s) of {path} are in the training splits, e.g. {next(iter(leaks))}"
            )
    sft = shuffle_options(alloc.sft, args.augment, args.seed) if args.augment > 1 else alloc.sft
    rl = shuffle_options(alloc.rl, args.augment, args.seed) if args.augment > 1 else alloc.rl
    write_records(args.out_dir / "sft.jsonl", sft)
    write_records(args.out_dir / "rl.jsonl", rl)
    write_json(
        args.out_dir / "allocation.json",
        {**alloc.report, "augment": args.augment, "written": {"sft": len(sft), "rl": len(rl)}},
    )
    counts = f"{len(alloc.sft)} SFT questions, {len(alloc.rl)} GRPO questions"
    print(f"{args.paradigm}: {counts} (x{args.augment} with shuffled options) -> {args.out_dir}")
    return 0


def cmd_balance(args: argparse.Namespace) -> int:
    """Write the position-balanced variant of a benchmark in its own format."""
    from audiomcq.benchmarks import get_benchmark
    from audiomcq.data.allocation import position_balanced
    from audiomcq.jsonio import is_json_list, write_json, write_jsonl

    bench = get_benchmark(args.benchmark)
    balanced = position_balanced(bench.load(args.input).records)
    rows = [bench.to_raw(r) for r in balanced]
    if Path(args.input).is_file() and is_json_list(Path(args.input)):
        write_json(args.output, rows)
    else:
        write_jsonl(args.output, rows)
    print(f"{args.benchmark}: {len(rows)} position-balanced items -> {args.output}")
    return 0
