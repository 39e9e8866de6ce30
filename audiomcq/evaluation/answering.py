"""Answering one task's items in one mode (with audio, or in silence) into resumable, fingerprinted part files.

Each mode's work directory (``<out>/<task>/work/<mode>``) records what made it (``audiomcq.fingerprint``): the
model's digest, the settings that change answers (budget, balanced variant, chunking, shard) and, per part, a digest
of the items it answered and their audio sizes. A rerun resumes the parts that are still valid and answers the
chunks an edited input changed; another model or setting is refused unless ``fresh`` discards the old parts, so a
report never mixes two models' answers. A changed budget (the data's longest answer changed) redoes every part.

A clip no model can hear (unreadable, empty, shorter than 0.1 s, NaN/inf or absurd samples) is ``corrupt``: the item
is counted and left unanswered, and the run goes on. A clip longer than the models' window is cut to it here and
counted (``audio_trimmed``), where the processor would cut it unannounced. An item whose question and choices exceed
``MAX_TEXT_CHARS`` is never tokenized or asked: it is ``over_length`` like one too long for the model's context.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audiomcq.data.record import MAX_TEXT_CHARS, MCQRecord, resolve_audio, text_chars
from audiomcq.errors import AudioMCQError
from audiomcq.fingerprint import WorkDir, chunk_digest, digest, engine_identity
from audiomcq.inference.budget import Budget, over_length, resolve_budget
from audiomcq.inference.formats import DEFAULT, PromptFormat
from audiomcq.jsonio import atomic_writer, iter_jsonl, json_line, load_json, write_json

log = logging.getLogger(__name__)


def askable(records: Iterable[MCQRecord]) -> Iterator[MCQRecord]:
    """The items whose text is within ``MAX_TEXT_CHARS`` (the others are never asked, nor counted in budgets)."""
    return (r for r in records if text_chars(r) <= MAX_TEXT_CHARS)


class Asker:
    """The engine with its generation budget, both made on first use, so a finished, resumed run loads no model;
    the budget is kept in ``budget.json`` for the metrics of such a run, and in each mode's fingerprint with a
    digest of what it was derived from."""

    def __init__(self, engine: Callable[[], Any], records: Sequence[MCQRecord], config: Any, work: Path):
        self.engine, self.records, self.config, self.path = engine, records, config, work / "budget.json"
        self.format: PromptFormat = getattr(engine, "format", DEFAULT)
        self.budget: Budget | None = None
        by_hand = config.max_new_tokens is not None
        self.basis = None if by_hand else digest([r.choices for r in askable(records)])

    def ready(self) -> tuple[Any, Budget]:
        engine = self.engine()
        if self.budget is None:
            self.budget = resolve_budget(
                self.config.max_new_tokens, list(askable(self.records)), engine, self.config.budget_margin
            )
            log.info("eval: %d new tokens at most (%s)", self.budget.max_new_tokens, self.budget.describe())
            write_json(self.path, self.budget.to_dict())
        return engine, self.budget

    def report(self) -> dict[str, Any] | None:
        if self.budget is not None:
            return self.budget.to_dict()
        return load_json(self.path) if self.path.is_file() else None

    def check(self, state: WorkDir) -> None:
        """Drop a mode's parts when the data's longest answer changed the budget they were answered with."""
        saved = state.meta.get("budget")
        if not saved or saved.get("basis") == self.basis:
            return
        _, budget = self.ready()
        if budget.max_new_tokens != saved["max_new_tokens"]:
            log.warning(
                "eval %s: the data's answers changed the budget from %d to %d tokens: every chunk is answered again",
                state.folder,
                saved["max_new_tokens"],
                budget.max_new_tokens,
            )
            state.forget()
        state.meta["budget"] = {"basis": self.basis, "max_new_tokens": budget.max_new_tokens}
        state.save()

    def stamp(self, state: WorkDir) -> None:
        """Record in a mode's fingerprint the budget its parts are answered with (none asked yet: nothing)."""
        if self.budget is None:
            return
        state.meta["budget"] = {"basis": self.basis, "max_new_tokens": self.budget.max_new_tokens}
        state.save()


def identity(engine: Any, config: Any, mode: str) -> dict[str, Any]:
    """What a mode's answers depend on beyond its items: the model, its prompt and budget settings, the balanced
    variant, the chunking and the shard."""
    spec = getattr(engine, "spec", None)
    ident = engine_identity(spec) if spec is not None else {"model": None, "settings": {}}
    ident["settings"].update(
        max_new_tokens=config.max_new_tokens, budget_margin=config.budget_margin, balanced=config.balanced
    )
    return {"stage": "eval", "mode": mode, **ident, "chunk_size": config.chunk_size, "shard": list(config.shard)}


def load_clip(record: MCQRecord, audio_root: str | Path | None) -> tuple[str, np.ndarray | None, bool]:
    """(``ok`` | ``missing`` | ``corrupt``, the 16 kHz waveform a model hears, whether it was cut to the window)."""
    from audiomcq.audio import AudioError, fit_window, load_checked

    path = resolve_audio(record, audio_root) if audio_root is not None else Path(record.audio_path or "")
    if path is None or not path.is_file():
        return "missing", None, False
    try:
        wave, trimmed = fit_window(load_checked(path, where=f"item {record.id} ({path})"))
    except AudioError as err:  # counted as audio_corrupt; the run goes on
        log.warning("%s", err)
        return "corrupt", None, False
    return "ok", wave, trimmed


def load_audio(record: MCQRecord, audio_root: str | Path | None) -> tuple[str, np.ndarray | None]:
    """(``ok`` | ``missing`` | ``corrupt``, 16 kHz waveform)."""
    status, wave, _ = load_clip(record, audio_root)
    return status, wave


def answer_mode(
    asker: Asker, records: Sequence[MCQRecord], audio_root: str | Path | None, mode: str, state: WorkDir, config: Any
) -> dict[str, dict[str, Any]]:
    """``{id: {"audio": status, "output": raw, "truncated": bool, "answer": extracted[, "over_length": need]}}``,
    from the valid part files, answering the chunks that have none."""
    asker.check(state)
    answers: dict[str, dict[str, Any]] = {}
    it = iter(records)
    count = 0
    for i in itertools.count():
        chunk = list(itertools.islice(it, config.chunk_size))
        if not chunk:
            break
        count, part = i + 1, state.part(i)
        key = chunk_digest(chunk, audio_root, mode=mode)  # silence lasts as long as each clip: sizes count too
        if state.entry(i, key) is None:
            _answer_chunk(asker, chunk, audio_root, mode, part)
            asker.stamp(state)
            state.done(i, key)
        stored = [row for _, row in iter_jsonl(part)]
        if [row["id"] for row in stored] != [r.id for r in chunk]:
            raise AudioMCQError(f"{part}: its items differ from the input's; rerun with --fresh")
        for row, record in zip(stored, chunk, strict=True):
            output = row["output"]
            row["answer"] = asker.format.prediction(output, record.choices) if output is not None else None
            answers[row["id"]] = row
    state.prune(count)
    return answers


def _answer_chunk(asker: Asker, chunk: list[MCQRecord], audio_root: str | Path | None, mode: str, part: Path) -> None:
    loaded = [load_clip(r, audio_root) for r in chunk]
    asked = [(r, w) for r, (status, w, _) in zip(chunk, loaded, strict=True) if status == "ok"]
    if mode == "silence":  # as long as each clip, the same silence array for equal lengths
        asked = [(r, _silence(len(w))) for r, w in asked]
    rows = _ask(asker, asked) if asked else {}
    with atomic_writer(part) as f:
        for r, (status, _, trimmed) in zip(chunk, loaded, strict=True):
            row = {"id": r.id, "audio": status, "output": None, **rows.get(r.id, {})}
            if trimmed:
                row["audio_trimmed"] = True
            f.write(json_line(row) + "\n")


def _ask(asker: Asker, asked: list[tuple[MCQRecord, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """The part-file fields of each asked item: its output and whether it was truncated, or, for an item too long
    for the model's context (or beyond ``MAX_TEXT_CHARS``), what it needs (then it is not asked)."""
    from audiomcq.inference import Request, Sampling
    from audiomcq.inference.base import is_truncated

    rows: dict[str, dict[str, Any]] = {}
    for r, _ in asked:
        if text_chars(r) > MAX_TEXT_CHARS:
            rows[r.id] = {"over_length": {"chars": text_chars(r), "limit": MAX_TEXT_CHARS}}
    asked = [(r, w) for r, w in asked if r.id not in rows]
    if not asked:
        return rows
    engine, budget = asker.ready()
    reqs = [Request(r.question, tuple(r.choices), w) for r, w in asked]
    too_long = over_length(engine, reqs, budget.max_new_tokens)
    keep = [k for k in range(len(reqs)) if k not in too_long]
    sampling = Sampling(budget.max_new_tokens, stop=asker.format.stops)
    outputs = engine.generate([reqs[k] for k in keep], sampling) if keep else []
    for k, outs in zip(keep, outputs, strict=True):
        rows[asked[k][0].id] = {"output": str(outs[0]), "truncated": is_truncated(outs[0])}
    for k, need in too_long.items():
        rows[asked[k][0].id] = {"over_length": {"tokens": need, "limit": engine.max_length}}
    return rows


_SILENCES: dict[int, np.ndarray] = {}


def _silence(samples: int) -> np.ndarray:
    """One read-only zero array per length, so the engine encodes each silence once (shared prefix)."""
    if samples not in _SILENCES:
        wave = np.zeros(samples, np.float32)
        wave.setflags(write=False)
        _SILENCES[samples] = wave
    return _SILENCES[samples]
