"""One filter model answering every chunk of the input under every probe, into resumable part files.

Before the first chunk the model's generation budget is fixed from the data: the longest well-formed answer over
every record's options (the whole input, so every shard and every resumed run gets the same budget), in this model's
tokens, plus a margin; generation also stops at ``</answer>``. A long right answer is then never cut into a wrong
one, and an answer that still hits the budget is flagged ``truncated`` in its cell and counted in ``stats.json``.
The budget goes to ``budget.json`` beside the parts. A record whose prompt, audio and budget would not fit the
model's context under some probe is not asked at all: its row carries ``over_length`` and the merge leaves it
unlabelled and reports it, instead of scoring a failed or clipped generation as wrong.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audiomcq.acf.probes import Clips, Probe, requests
from audiomcq.data.io import RecordReader
from audiomcq.data.record import MCQRecord
from audiomcq.errors import AudioMCQError
from audiomcq.inference import EngineSpec, make_engine
from audiomcq.inference.budget import Budget, engine_format, over_length, resolve_budget
from audiomcq.jsonio import atomic_writer, json_line, write_json

log = logging.getLogger(__name__)
BUDGET_FILE = "budget.json"


def chunks(data: str | Path, config: Any) -> Iterator[list[MCQRecord]]:
    """The shard's records in chunks, in input order (a bad record raises, naming file and line)."""
    index, count = config.shard
    if not 0 <= index < count:
        raise AudioMCQError(f"shard {index}/{count}: the index must be in 0..{count - 1}")
    reader = RecordReader(data, validate=config.validate)
    mine = (r for p, r in enumerate(reader) if p % count == index)
    while chunk := list(itertools.islice(mine, config.chunk_size)):
        yield chunk


def answer_all(data: str | Path, spec: EngineSpec, name: str, probes: list[Probe], audio_root: str | Path | None,
               work: Path, config: Any) -> None:  # fmt: skip
    """Answer the chunks of ``data`` that have no part file in ``work`` yet, with the model ``spec`` names."""
    from audiomcq.metrics import push

    engine: Any = None  # loaded on the first chunk not done yet, so a finished model costs nothing on resume
    budget: Budget | None = None
    done = skipped = records = 0
    start = time.perf_counter()
    group = {"model": name, "shard": f"{config.shard[0]}of{config.shard[1]}"}
    for i, chunk in enumerate(chunks(data, config)):
        part = work / f"part-{i:06d}.jsonl"
        if part.is_file():
            skipped += 1
            continue
        if engine is None:
            engine = make_engine(spec)
            budget = model_budget(data, engine, config, name)
            write_json(work / BUDGET_FILE, budget.to_dict())
        assert budget is not None
        _answer_chunk(engine, budget, chunk, probes, Clips.load(chunk, audio_root), part, config)
        done, records = done + 1, records + len(chunk)
        push("audiomcq-filter", group, {"records_done": records, "chunks_done": done, "chunks_skipped": skipped,
             "records_per_second": records / (time.perf_counter() - start)}, prefix="audiomcq_filter")  # fmt: skip
    log.info("ACF %s: %d chunks answered, %d already done", name, done, skipped)


def model_budget(data: str | Path, engine: Any, config: Any, name: str) -> Budget:
    """This model's generation budget: ``config.max_new_tokens`` when set, else from every record of ``data``."""
    budget = resolve_budget(config.max_new_tokens, RecordReader(data, validate=config.validate), engine,
                            config.budget_margin)  # fmt: skip
    log.info("ACF %s: %d new tokens at most (%s)", name, budget.max_new_tokens, budget.describe())
    return budget


def _answer_chunk(engine: Any, budget: Budget, chunk: list[MCQRecord], probes: list[Probe], clips: Clips, part: Path,
                  config: Any) -> None:  # fmt: skip
    fmt = engine_format(engine)
    asked = [requests(probe, chunk, clips) for probe in probes]
    too_long: dict[int, dict[str, int]] = {}  # position -> the longest need over the probes, and the limit
    for reqs, _ in asked:
        for j, need in over_length(engine, reqs, budget.max_new_tokens).items():
            if need > too_long.get(j, {}).get("tokens", 0):
                too_long[j] = {"tokens": need, "limit": engine.max_length}
    keep = [j for j in range(len(chunk)) if j not in too_long]
    cells: list[dict[str, Any]] = [{} for _ in chunk]
    sampling = config.sampling(budget.max_new_tokens, fmt.stops)
    for probe, (reqs, shown) in zip(probes, asked, strict=True):
        outputs = engine.generate([reqs[j] for j in keep], sampling) if keep else []
        for j, outs in zip(keep, outputs, strict=True):
            cells[j][probe.name] = judge(fmt, chunk[j], shown[j], outs)
    with atomic_writer(part) as f:
        for j, (record, cell, wave) in enumerate(zip(chunk, cells, clips.waves, strict=True)):
            row: dict[str, Any] = {"id": record.id, "audio_missing": wave is None, "probes": cell}
            if j in too_long:
                row["over_length"] = too_long[j]
            f.write(json_line(row) + "\n")


def judge(fmt: Any, record: MCQRecord, choices: tuple[str, ...], outputs: list[str]) -> dict[str, Any]:
    """Raw outputs, parsed answers (None: no answer found, recorded as unparsed), verdicts and truncation flags,
    judged like the official scripts (the raw output stands in for a missing answer; an empty one is wrong). The
    answer is read in the model's own format: a letter counts only where the prompt showed letters."""
    from audiomcq.inference.base import is_truncated
    from audiomcq.scoring import string_match

    answers = [fmt.answer(o, choices) for o in outputs]
    correct = [string_match(record.answer, fmt.prediction(o, choices), choices) for o in outputs]
    truncated = [is_truncated(o) for o in outputs]
    return {"outputs": [str(o) for o in outputs], "answers": answers, "correct": correct, "truncated": truncated}
