"""One filter model answering every chunk of the input under every probe, into resumable part files.

Before the first chunk the model's generation budget is fixed from the data: the longest well-formed answer over
every record's options (the whole input, so every shard and every resumed run gets the same budget), in this model's
tokens, plus a margin; generation also stops at ``</answer>``. A long right answer is then never cut into a wrong
one, and an answer that still hits the budget is flagged ``truncated`` in its cell and counted in ``stats.json``.
The budget goes to ``budget.json`` beside the parts. A record whose prompt, audio and budget would not fit the
model's context under some probe (or whose text alone is beyond ``MAX_TEXT_CHARS``) is not asked at all: its row
carries ``over_length`` and the merge leaves it unlabelled and reports it, instead of scoring a failed or clipped
generation as wrong.

The model's work directory is fingerprinted (``audiomcq.fingerprint``): the model's digest and the settings that
change answers must match to resume (else the run is refused, or ``fresh`` discards that model's parts); a part
counts only for the exact chunk it answered (records and audio sizes), so an edited input redoes the chunks it
changed; a probe added on a rerun is answered into the finished parts, a removed one is left out of the labels;
and a changed budget (the input's longest answer changed) redoes every part.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from audiomcq.acf.probes import Clips, Probe, requests
from audiomcq.data.io import RecordReader, count_items
from audiomcq.data.record import MAX_TEXT_CHARS, MCQRecord, text_chars
from audiomcq.errors import AudioMCQError
from audiomcq.fingerprint import WorkDir, chunk_digest, digest, engine_identity
from audiomcq.inference import EngineSpec, make_engine
from audiomcq.inference.budget import Budget, engine_format, over_length, resolve_budget
from audiomcq.jsonio import atomic_writer, iter_jsonl, json_line, write_json
from audiomcq.progress import Progress

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


def shard_size(data: str | Path, shard: tuple[int, int]) -> int | None:
    """Items in shard ``(index, count)`` of ``data`` (positions p with p % count == index), or None if unknown."""
    total = count_items(data)
    index, count = shard
    return None if total is None else max(0, (total - index + count - 1) // count)


def identity(spec: EngineSpec, config: Any) -> dict[str, Any]:
    """What one filter model's answers depend on, beyond the chunks it answers: the model, its prompt settings, the
    sampling and budget settings, the chunking and the shard."""
    ident = engine_identity(spec)
    ident["settings"].update(
        samples=config.samples,
        temperature=config.temperature if config.samples > 1 else 0.0,
        max_new_tokens=config.max_new_tokens,
        budget_margin=config.budget_margin,
    )
    return {"stage": "filter", **ident, "chunk_size": config.chunk_size, "shard": list(config.shard)}


def answer_all(
    data: str | Path,
    spec: EngineSpec,
    name: str,
    probes: list[Probe],
    audio_root: str | Path | None,
    work: Path,
    config: Any,
    fresh: bool = False,
) -> None:
    """Answer, with the model ``spec`` names, the chunks of ``data`` (and the probes) that ``work`` has no valid
    part for yet."""
    from audiomcq.infra.metrics import push

    state = WorkDir(work, identity(spec, config), fresh=fresh)
    model = _Model(spec, name, data, config, state)
    model.check_budget()
    done = skipped = records = count = 0
    start = time.perf_counter()
    group = {"model": name, "shard": f"{config.shard[0]}of{config.shard[1]}"}
    with Progress(f"filter {name}", shard_size(data, config.shard), "question") as progress:
        for i, chunk in enumerate(chunks(data, config)):
            count = i + 1
            key = chunk_digest(chunk, audio_root)
            entry = state.entry(i, key)
            have = set(entry["probes"]) if entry else set()
            missing = [p for p in probes if p.name not in have]
            if not missing:
                skipped += 1
                progress.skip(len(chunk))
                continue
            engine, budget = model.ready()
            previous = [row for _, row in iter_jsonl(state.part(i))] if entry else None
            clips = Clips.load(chunk, audio_root)
            _answer_chunk(engine, budget, chunk, missing, clips, state.part(i), config, previous)
            state.done(i, key, probes=sorted(have | {p.name for p in missing}))
            done, records = done + 1, records + len(chunk)
            progress.update(len(chunk))
            rate = records / (time.perf_counter() - start)
            push(
                "audiomcq-filter",
                group,
                {"records_done": records, "chunks_done": done, "chunks_skipped": skipped, "records_per_second": rate},
                prefix="audiomcq_filter",
            )
    state.prune(count)  # parts beyond the input's end belong to a longer input
    log.info("ACF %s: %d chunks answered, %d already done", name, done, skipped)


class _Model:
    """The engine and its budget, made on first use (a finished model costs nothing on resume); the budget and the
    input it came from are kept in the work directory's fingerprint."""

    def __init__(self, spec: EngineSpec, name: str, data: str | Path, config: Any, state: WorkDir) -> None:
        self.spec, self.name, self.data, self.config, self.state = spec, name, data, config, state
        self.engine: Any = None
        self.budget: Budget | None = None

    def ready(self) -> tuple[Any, Budget]:
        if self.engine is None:
            self.engine = make_engine(self.spec)
            self.budget = model_budget(self.data, self.engine, self.config, self.name)
            write_json(self.state.folder / BUDGET_FILE, self.budget.to_dict())
            self.state.meta["budget"] = {"basis": self.basis(), "max_new_tokens": self.budget.max_new_tokens}
            self.state.save()
        assert self.budget is not None
        return self.engine, self.budget

    def basis(self) -> str | None:
        """A digest of what a budget from the data depends on: every askable record's choices (None: set by hand)."""
        if self.config.max_new_tokens is not None:
            return None
        return digest([r.choices for r in askable(RecordReader(self.data, validate=self.config.validate))])

    def check_budget(self) -> None:
        """Drop every part when the input's longest answer changed the budget the parts were answered with."""
        saved = self.state.meta.get("budget")
        if not saved or saved.get("basis") == self.basis():
            return
        old = saved["max_new_tokens"]
        _, budget = self.ready()
        if budget.max_new_tokens != old:
            log.warning(
                "ACF %s: the input's answers changed the budget from %d to %d tokens: every chunk is answered again",
                self.name,
                old,
                budget.max_new_tokens,
            )
            self.state.forget()


def askable(records: Iterable[MCQRecord]) -> Iterator[MCQRecord]:
    """The records whose text is within ``MAX_TEXT_CHARS`` (the others are never asked, nor counted in budgets)."""
    return (r for r in records if text_chars(r) <= MAX_TEXT_CHARS)


def model_budget(data: str | Path, engine: Any, config: Any, name: str) -> Budget:
    """This model's generation budget: ``config.max_new_tokens`` when set, else from every record of ``data``."""
    budget = resolve_budget(
        config.max_new_tokens, askable(RecordReader(data, validate=config.validate)), engine, config.budget_margin
    )
    log.info("ACF %s: %d new tokens at most (%s)", name, budget.max_new_tokens, budget.describe())
    return budget


def _answer_chunk(
    engine: Any,
    budget: Budget,
    chunk: list[MCQRecord],
    probes: list[Probe],
    clips: Clips,
    part: Path,
    config: Any,
    previous: list[dict[str, Any]] | None = None,
) -> None:
    """Answer ``probes`` over a chunk into ``part``; ``previous``: the part's rows so far (other probes), kept."""
    fmt = engine_format(engine)
    if previous is not None and [row["id"] for row in previous] != [r.id for r in chunk]:
        raise AudioMCQError(f"{part}: its records differ from the chunk it is recorded for; rerun with --fresh")
    rows = previous or [{"id": r.id, "probes": {}} for r in chunk]
    asked = [requests(probe, chunk, clips) for probe in probes]
    too_long: dict[int, dict[str, int]] = {j: r["over_length"] for j, r in enumerate(rows) if r.get("over_length")}
    for j, record in enumerate(chunk):
        if j not in too_long and text_chars(record) > MAX_TEXT_CHARS:
            too_long[j] = {"chars": text_chars(record), "limit": MAX_TEXT_CHARS}
    candidates = [j for j in range(len(chunk)) if j not in too_long]
    for reqs, _ in asked:  # the longest need over the probes, and the limit
        for k, need in over_length(engine, [reqs[j] for j in candidates], budget.max_new_tokens).items():
            if need > too_long.get(candidates[k], {}).get("tokens", 0):
                too_long[candidates[k]] = {"tokens": need, "limit": engine.max_length}
    keep = [j for j in range(len(chunk)) if j not in too_long]
    sampling = config.sampling(budget.max_new_tokens, fmt.stops)
    for probe, (reqs, shown) in zip(probes, asked, strict=True):
        outputs = engine.generate([reqs[j] for j in keep], sampling) if keep else []
        for j, outs in zip(keep, outputs, strict=True):
            rows[j]["probes"][probe.name] = judge(fmt, chunk[j], shown[j], outs)
    with atomic_writer(part) as f:
        for j, row in enumerate(rows):
            status = clips.status[j] if clips.status else ("missing" if clips.waves[j] is None else "ok")
            out: dict[str, Any] = {"id": row["id"], "audio_missing": status == "missing", "probes": row["probes"]}
            if status == "corrupt":
                out["audio_corrupt"] = True
            if clips.trimmed and clips.trimmed[j]:
                out["audio_trimmed"] = True
            if j in too_long:
                out["over_length"] = too_long[j]
            f.write(json_line(out) + "\n")


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
