"""Data allocation for the paper's paradigms, option-shuffle augmentation, position-balanced selection sets and
the train/eval leakage guard.

Everything is deterministic and independent of input order: a record's fate depends only on ``(seed, id)``
through a SHA-256 rank, so the same split comes out of a shuffled file, a re-run or a sharded job.

Paradigms: every SFT stage has the same fixed size (313,177 = |weak| in the paper), and the
GRPO pool is disjoint from it.

| paradigm | SFT | GRPO pool |
|---|---|---|
| weak_to_strong | weak | strong |
| mixed_to_strong | random mix of weak+strong | strong not used by SFT |
| mixed_to_mixed | random mix | the rest (weak+strong) |
| all_sft | everything | - |
| all_grpo | - | everything |
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiomcq.data.record import AC_KEY, MCQRecord, resolve_audio
from audiomcq.errors import AudioMCQError

PAPER_TOTAL = 571_118
PAPER_SFT_SIZE = 313_177
PARADIGMS = ("weak_to_strong", "mixed_to_strong", "mixed_to_mixed", "all_sft", "all_grpo")


def rank(seed: int, *parts: Any) -> int:
    """A stable pseudo-random 64-bit rank for (seed, parts): the same on every machine and Python version."""
    digest = hashlib.sha256("\x1f".join(map(str, (seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def pick(records: Iterable[MCQRecord], n: int, seed: int, salt: str = "") -> list[MCQRecord]:
    """The ``n`` records with the lowest rank: a seeded sample that does not depend on input order."""
    return sorted(records, key=lambda r: rank(seed, salt, r.id))[:n]


@dataclass
class Allocation:
    """The SFT set and the disjoint GRPO pool of one paradigm, and how they were drawn."""

    paradigm: str
    sft: list[MCQRecord]
    rl: list[MCQRecord]
    report: dict[str, Any] = field(default_factory=dict)


def allocate(
    records: Sequence[MCQRecord],
    paradigm: str,
    *,
    sft_size: int | float | None = None,
    rl_size: int | None = None,
    seed: int = 0,
) -> Allocation:
    """Split labelled records for a paradigm.

    Args:
        records: records whose ``audio-contribution`` is weak or strong (all of them, for labelled paradigms).
        paradigm: one of PARADIGMS.
        sft_size: SFT set size: a count, a fraction of all records (0 < x <= 1), or None for |weak| (the paper's
            choice: its fixed 313,177 is exactly the weak set), so every paradigm trains SFT on the same amount.
        rl_size: cap on the GRPO pool (None: all that the paradigm allows).
        seed: sampling seed.
    """
    if paradigm not in PARADIGMS:
        raise AudioMCQError(f"unknown paradigm {paradigm!r}; known: {', '.join(PARADIGMS)}")
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dup = next(i for i, n in _counts(ids).items() if n > 1)
        raise AudioMCQError(f"record ids must be unique to allocate; {dup!r} occurs more than once")
    weak = [r for r in records if r.audio_contribution == "weak"]
    strong = [r for r in records if r.audio_contribution == "strong"]
    unlabelled = len(records) - len(weak) - len(strong)
    if unlabelled and paradigm not in ("all_sft", "all_grpo"):
        raise AudioMCQError(
            f"{unlabelled} record(s) have no {AC_KEY} label (weak/strong); run audio-contribution filtering first"
        )
    size = _resolve_size(sft_size, len(records), len(weak))
    if paradigm == "weak_to_strong":
        if size > len(weak):
            raise AudioMCQError(f"weak_to_strong needs {size} weak records for SFT but only {len(weak)} exist")
        sft, pool = pick(weak, size, seed, "sft"), strong
    elif paradigm in ("mixed_to_strong", "mixed_to_mixed"):
        if size > len(records):
            raise AudioMCQError(f"SFT size {size} exceeds the {len(records)} records available")
        sft = pick(records, size, seed, "sft")
        taken = {r.id for r in sft}
        base = strong if paradigm == "mixed_to_strong" else records
        pool = [r for r in base if r.id not in taken]
    elif paradigm == "all_sft":
        sft, pool = list(records), []
    else:
        sft, pool = [], list(records)
    if rl_size is not None and rl_size < 0:
        raise AudioMCQError(f"GRPO pool size must be >= 0, got {rl_size}")
    rl = pick(pool, len(pool) if rl_size is None else min(rl_size, len(pool)), seed, "rl")
    overlap = {r.id for r in sft} & {r.id for r in rl}
    if overlap:  # a guard on this function's own logic: the paper's SFT and GRPO data never share a question
        raise AssertionError(f"SFT and GRPO sets overlap on {len(overlap)} ids")
    report = {
        "paradigm": paradigm,
        "seed": seed,
        "input": {"total": len(records), "weak": len(weak), "strong": len(strong), "unlabelled": unlabelled},
        "sft": _composition(sft),
        "rl": _composition(rl),
    }
    return Allocation(paradigm, sft, rl, report)


def _resolve_size(sft_size: int | float | None, total: int, weak: int) -> int:
    if sft_size is None:
        return weak
    if isinstance(sft_size, float):
        if not 0 < sft_size <= 1:
            raise AudioMCQError(f"an SFT fraction must be in (0, 1], got {sft_size}")
        return round(sft_size * total)
    if sft_size < 0:
        raise AudioMCQError(f"SFT size must be >= 0, got {sft_size}")
    return sft_size


def _counts(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for v in values:
        counts[v] += 1
    return counts


def _composition(records: Sequence[MCQRecord]) -> dict[str, Any]:
    return {
        "count": len(records),
        "weak": sum(r.audio_contribution == "weak" for r in records),
        "strong": sum(r.audio_contribution == "strong" for r in records),
    }


def shuffle_options(records: Iterable[MCQRecord], k: int = 4, seed: int = 0) -> list[MCQRecord]:
    """Each record ``k`` times with its choices in different orders (distinct while n! allows); answer text kept.

    Copies get ids ``<id>#shuf<j>`` and ``augmented_from``. Augment after allocating, so that all copies of a
    question land in the same split.
    """
    if k < 1:
        raise AudioMCQError(f"augmentation factor must be >= 1, got {k}")
    out: list[MCQRecord] = []
    for record in records:
        n = len(record.choices)
        rng = random.Random(rank(seed, "shuffle", record.id))
        wanted = min(k, math.factorial(n))
        orders: list[tuple[int, ...]] = []
        while len(orders) < wanted:
            order = tuple(rng.sample(range(n), n))
            if order not in orders:
                orders.append(order)
        for j, order in enumerate(itertools.islice(itertools.cycle(orders), k)):
            out.append(
                record.with_choices(
                    [record.choices[i] for i in order], f"{record.id}#shuf{j}", augmented_from=record.id
                )
            )
    return out


def position_balanced(records: Iterable[MCQRecord]) -> list[MCQRecord]:
    """The selection set "à la MMAU-test-mini-4k": each question once per answer position, by cyclic rotation.

    A question with n choices yields n copies (ids ``<id>#pos<p>``, ``answer_position`` p, ``balanced_from``), the
    correct choice at position 0..n-1 and the distractors in their original cyclic order. So 2-, 5- and 8-option
    questions give 2, 5 and 8 copies (MMAU-test-mini: 948·4 + 27·2 + 24·5 + 1·8 = 3,974 items), and the placed
    answer takes each position equally often *within each option count*. Where the answer text occurs twice (16
    MMAU-test-mini items), the first occurrence is the one placed, so the other copy can come earlier and the
    first-occurrence positions are then not uniform; scoring by text is unaffected.
    """
    out: list[MCQRecord] = []
    for record in records:
        start = record.answer_index
        if start is None:
            raise AudioMCQError(f"record {record.id!r}: answer {record.answer!r} is not a choice; cannot balance it")
        n = len(record.choices)
        for p in range(n):
            shift = (p - start) % n
            rotated = [record.choices[(i - shift) % n] for i in range(n)]
            out.append(record.with_choices(rotated, f"{record.id}#pos{p}", balanced_from=record.id, answer_position=p))
    return out


def asset_keys(record: MCQRecord, audio_root: str | Path | None = None) -> set[str]:
    """How an audio asset is recognised across datasets: its lower-cased file name without extension, plus its
    content hash when the file is reachable under ``audio_root``. Two assets are the same if any key matches."""
    if not record.audio_path:
        return set()
    keys = {"name:" + Path(record.audio_path).stem.lower()}
    if audio_root is not None:
        path = resolve_audio(record, audio_root)
        if path is not None and path.is_file():
            keys.add("sha256:" + hashlib.sha256(path.read_bytes()).hexdigest())
    return keys


def find_leakage(
    train: Iterable[MCQRecord],
    evaluation: Iterable[MCQRecord],
    *,
    train_root: str | Path | None = None,
    eval_root: str | Path | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Audio assets present in both sets: ``{asset: {"train": ids, "eval": ids}}`` (empty when clean).

    Name keys catch the common case (same clip file name); pass both roots to compare file contents instead,
    which also catches renamed copies.
    """
    train_by_asset: dict[str, list[str]] = defaultdict(list)
    for record in train:
        for key in asset_keys(record, train_root):
            train_by_asset[key].append(record.id)
    leaks: dict[str, dict[str, list[str]]] = {}
    for record in evaluation:
        for key in sorted(asset_keys(record, eval_root)):
            if key in train_by_asset:
                leaks.setdefault(key, {"train": train_by_asset[key], "eval": []})["eval"].append(record.id)
                break
    return leaks


def check_no_leakage(train: Iterable[MCQRecord], evaluation: Iterable[MCQRecord], **roots: Any) -> None:
    """Raise naming the shared assets when any audio asset is in both a training split and an evaluation set."""
    leaks = find_leakage(train, evaluation, **roots)
    if leaks:
        shown = ", ".join(f"{k} (train {v['train'][:3]}, eval {v['eval'][:3]})" for k, v in list(leaks.items())[:5])
        raise AudioMCQError(f"{len(leaks)} audio asset(s) appear in both training and evaluation data: {shown}")
