"""``audiomcq eval``: a model on benchmark tasks, scored exactly like the official scripts, with the silent-audio
control, AC-strong subsets and the position-balanced variant.

Per task and mode (``audio``, and ``silence`` for the control) the shard's items are answered in chunks written
atomically to ``<out>/<task>/work/<mode>/part-NNNNNN.jsonl``, so a restarted run skips finished chunks (no
duplicates, no gaps), as long as they were answered by the same model and settings for the same items
(``audiomcq.evaluation.answering``): another model into an old ``--out`` is refused unless ``fresh``. Then the
official prediction file is written and scored by the benchmark's official rules; ``metrics.json`` holds those
totals (so re-scoring the file gives the same numbers), the AC-strong subset's accuracy, the accuracy in silence and
the difference (the model's audio contribution), counts of items left unanswered because their audio is missing or
no model could hear it (corrupt), and of clips cut to the models' window (``audio_trimmed``). Ids must be unique:
answers are matched by id.

Greedy decoding that stops at ``</answer>``, with a budget from the data unless ``max_new_tokens`` is set: the
longest well-formed answer over the task's options in the model's tokens plus a margin (``budget.json`` and
``metrics.json`` say which). Answers that still hit the budget are flagged and counted (``truncated``). Items whose
prompt, audio and budget exceed the model's context (``max_length``) are not asked: they are counted as
``over_length``, listed in ``over_length.jsonl`` and get no prediction, like items whose audio is missing.

The metrics schema, the one every reader uses (the demo's report, checkpoint selection, the promotion gate);
accuracies are percentages. ``<out>/metrics.json`` is ``{"model", "tasks": {task: metrics}}``, and each task's
``<out>/<task>/metrics.json`` holds::

    task, data, shard, items, balanced, max_new_tokens, problems, budget
    modes.<audio|silence>      the silent control is "silence": each clip replaced by zeros of its length
        predictions, answered, audio_missing, audio_corrupt, over_length, truncated, audio_trimmed   (counts)
        total        {accuracy, correct, count, unparsed, missing}  the official rule: unanswered items left out
        strict       {accuracy, correct, count}                     every item, an unanswered one wrong
        breakdown    {field: {group: {accuracy, correct, count}}}   the benchmark's groups; the synthetic task's:
                     question_type, audio-contribution (weak/strong), ground_truth (text_answerable /
                     audio_dependent) and family
        ac_strong    {accuracy, correct, count}   the AC-strong subset: the ids given, else the items labelled strong
                                                  (absent when neither)
        consistency  {all_positions_right, questions}               the balanced variant only
    audio_contribution         total accuracy with audio minus in silence (when both were scored)

A hidden-answer task's modes carry a ``note`` instead of scores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiomcq.data.record import MCQRecord
from audiomcq.errors import AudioMCQError
from audiomcq.evaluation.answering import Asker, answer_mode, identity, load_audio
from audiomcq.evaluation.tasks import Task, get_task
from audiomcq.fingerprint import WorkDir, clean_tmp
from audiomcq.formats import MISSING, accuracy
from audiomcq.inference.budget import DEFAULT_MARGIN
from audiomcq.jsonio import atomic_writer, json_line, write_json

__all__ = ["EvalConfig", "LazyEngine", "evaluate_task", "lazy_engine", "load_audio", "markdown", "run_eval"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """How an evaluation runs (``max_new_tokens`` None: the budget comes from the data)."""

    batch_size: int = 64
    max_new_tokens: int | None = None
    chunk_size: int = 256
    shard: tuple[int, int] = (0, 1)
    silent_control: bool = True
    balanced: bool = False  # each question once per answer position; adds consistency across positions
    dtype: str = "auto"  # the model's dtype (auto: the checkpoint's own)
    budget_margin: int = DEFAULT_MARGIN
    max_length: int | None = None  # the model's context in tokens (default: the checkpoint's max positions)

    def __post_init__(self) -> None:
        checks = (("max_new_tokens", 1), ("max_length", 1), ("budget_margin", 0), ("chunk_size", 1), ("batch_size", 1))
        for key, least in checks:
            value = getattr(self, key)
            if isinstance(value, float) and value.is_integer():  # numbers passed through KFP arrive as doubles
                object.__setattr__(self, key, value := int(value))
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
                raise AudioMCQError(f"eval setting {key} must be a whole number >= {least}, not {value!r}")


def evaluate_task(
    engine: Callable[[], Any],
    task: Task,
    data: str | Path,
    audio_root: str | Path | None,
    out_dir: str | Path,
    config: EvalConfig = EvalConfig(),
    ac_strong: set[str] | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Evaluate one task; ``engine`` returns the (lazily loaded) inference engine. Returns ``metrics.json``.
    ``ac_strong``: the AC-strong subset's ids (default: the items labelled strong, if any are labelled).
    ``fresh``: discard the finished parts another model or setting made instead of refusing to run."""
    from audiomcq.data.allocation import position_balanced

    index, count = config.shard
    if not 0 <= index < count:
        raise AudioMCQError(f"shard {index}/{count}: the index must be in 0..{count - 1}")
    loaded = task.benchmark.load(data)
    _unique_ids(loaded.records, data)
    if ac_strong is None:
        ac_strong = _labelled_strong(loaded.records)
    records = [r for p, r in enumerate(loaded.records) if p % count == index]
    if config.balanced:
        records = position_balanced(records)
    out = Path(out_dir)
    clean_tmp(out)
    asker = Asker(engine, loaded.records, config, out / "work")  # the budget spans every item, whatever the shard
    metrics: dict[str, Any] = {
        "task": task.name,
        "data": str(data),
        "shard": list(config.shard),
        "items": len(records),
        "balanced": config.balanced,
        "max_new_tokens": config.max_new_tokens,
        "problems": dict(loaded.problem_counts()),
        "modes": {},
    }
    too_long: list[dict[str, Any]] = []
    for mode in ("audio", "silence") if config.silent_control else ("audio",):
        state = WorkDir(out / "work" / mode, identity(engine, config, mode), fresh=fresh)
        answers = answer_mode(asker, records, audio_root, mode, state, config)
        too_long += [{"id": i, "mode": mode, **a["over_length"]} for i, a in answers.items() if a.get("over_length")]
        path = task.predictions_path(out, mode)
        counts = task.write_predictions(records, answers, path)
        result: dict[str, Any] = {"predictions": str(path), **counts}
        scored = task.score(path)
        if scored is None:
            result["note"] = "answers are hidden: submit the prediction file to the official server"
        else:
            verdicts = {item["id"]: item["correct"] for item in scored.pop("items")}
            result.update(scored)
            if ac_strong is not None:
                result["ac_strong"] = _subset(records, verdicts, ac_strong)
            if config.balanced:
                result["consistency"] = _consistency(records, verdicts)
        metrics["modes"][mode] = result
    if "silence" in metrics["modes"] and "total" in metrics["modes"]["audio"]:
        audio, silence = (metrics["modes"][m]["total"]["accuracy"] for m in ("audio", "silence"))
        metrics["audio_contribution"] = audio - silence
    metrics["budget"] = asker.report()
    if metrics["budget"]:
        metrics["max_new_tokens"] = metrics["budget"]["max_new_tokens"]
    with atomic_writer(out / "over_length.jsonl") as f:
        f.writelines(json_line(row) + "\n" for row in too_long)
    write_json(out / "metrics.json", metrics)
    return metrics


def _unique_ids(records: Sequence[MCQRecord], data: str | Path) -> None:
    """Answers and predictions are matched by id: a repeated one would hand one item's answer to another."""
    seen: dict[str, int] = {}
    for position, record in enumerate(records, start=1):
        if record.id in seen:
            raise AudioMCQError(
                f"{data}: id {record.id!r} is used by items {seen[record.id]} and {position}; every "
                "item needs its own id (answers are matched by id)"
            )
        seen[record.id] = position


def _labelled_strong(records: Sequence[MCQRecord]) -> set[str] | None:
    """The (base) ids of the items labelled AC-strong, when the items carry audio-contribution labels (else None);
    base ids, as ``_subset`` matches them, so an already position-balanced set counts every variant."""
    if not any(r.audio_contribution for r in records):
        return None
    return {_base_id(r) for r in records if r.audio_contribution == "strong"}


def _base_id(record: MCQRecord) -> str:
    return str(record.extra.get("balanced_from", record.id))


def _subset(records: Sequence[MCQRecord], verdicts: dict[str, bool | None], ids: set[str]) -> dict[str, Any]:
    """Official-rule accuracy over the items whose (base) id is in ``ids``."""
    scored = [verdicts[r.id] for r in records if _base_id(r) in ids and verdicts.get(r.id) is not None]
    correct = sum(bool(v) for v in scored)
    return {"accuracy": 100.0 * correct / len(scored) if scored else 0.0, "correct": correct, "count": len(scored)}


def _consistency(records: Sequence[MCQRecord], verdicts: dict[str, bool | None]) -> dict[str, Any]:
    """Share of questions answered right at every answer position (of those with all positions scored)."""
    by_question: dict[str, list[bool | None]] = {}
    for r in records:
        by_question.setdefault(_base_id(r), []).append(verdicts.get(r.id))
    complete = [v for v in by_question.values() if all(x is not None for x in v)]
    stable = sum(all(v) for v in complete)
    return {"all_positions_right": 100.0 * stable / len(complete) if complete else 0.0, "questions": len(complete)}


class LazyEngine:
    """The engine of a spec, loaded on its first call (a finished, resumed run loads no model); its prompt
    ``format`` is known before that, from the spec."""

    def __init__(self, spec: Any) -> None:
        self.spec, self.format = spec, spec.format
        self._engine: Any = None

    def __call__(self) -> Any:
        if self._engine is None:
            from audiomcq.inference import make_engine

            self._engine = make_engine(self.spec)
        return self._engine


def lazy_engine(
    model: str | Path | dict[str, Any], batch_size: int, dtype: str = "auto", max_length: int | None = None
) -> LazyEngine:
    """The engine of a model directory (or ``s3://`` prefix), or of a model spec mapping (``EngineSpec`` keys: an
    endpoint, a prompt format), loaded on its first call."""
    from audiomcq.inference import EngineSpec
    from audiomcq.infra.storage import local_model

    entry = dict(model) if isinstance(model, dict) else {"path": str(model)}
    defaults: dict[str, Any] = {"batch_size": batch_size, "dtype": dtype}
    if max_length is not None:
        defaults["max_length"] = max_length
    spec = EngineSpec.from_dict({**defaults, **entry})
    if spec.backend != "openai":
        from dataclasses import replace

        spec = replace(spec, path=local_model(spec.path))
    return LazyEngine(spec)


def run_eval(
    model: str | dict[str, Any],
    tasks: dict[str, str | Path],
    audio_roots: dict[str, str | Path | None],
    out_dir: str | Path,
    config: EvalConfig = EvalConfig(),
    ac_strong: dict[str, str | Path] | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on every task (name -> metadata path); writes ``<out>/<task>/…`` and ``<out>/metrics.json``
    (all tasks) and ``<out>/metrics.md``. ``fresh``: see ``evaluate_task``."""
    engine = lazy_engine(model, config.batch_size, config.dtype, config.max_length)
    out = Path(out_dir)
    clean_tmp(out)
    results = {}
    for name, data in tasks.items():
        ids = None
        if ac_strong and name in ac_strong:
            ids = {line.strip() for line in Path(ac_strong[name]).read_text().splitlines() if line.strip()}
        task = get_task(name)
        results[name] = evaluate_task(engine, task, data, audio_roots.get(name), out / name, config, ids, fresh)
    name = model if isinstance(model, str) else str(model.get("name") or model.get("path"))
    summary = {"model": name, "tasks": results}
    write_json(out / "metrics.json", summary)
    (out / "metrics.md").write_text(markdown(summary))
    return summary


def markdown(summary: dict[str, Any]) -> str:
    """One row per task: accuracy with audio (official rule), AC-strong, in silence, audio contribution, unanswered,
    and the answers cut at the budget."""
    header = (
        "| task | items | accuracy | AC-strong | silence | audio contribution | missing/corrupt audio "
        "| over-length | truncated |"
    )
    lines = [f"# Evaluation of `{summary['model']}`", "", header, "|---|---|---|---|---|---|---|---|---|"]
    for name, m in summary["tasks"].items():
        audio, silence = m["modes"]["audio"], m["modes"].get("silence", {})
        contribution = f"{m['audio_contribution']:+.1f}" if "audio_contribution" in m else MISSING
        scores = [accuracy(audio.get("total")), accuracy(audio.get("ac_strong")), accuracy(silence.get("total"))]
        counts = [f"{audio['audio_missing']}/{audio['audio_corrupt']}", audio.get("over_length", 0)]
        cells = [name, m["items"], *scores, contribution, *counts, audio.get("truncated", 0)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    trimmed = {name: m["modes"]["audio"].get("audio_trimmed", 0) for name, m in summary["tasks"].items()}
    notes = [
        f"{name}: {n} items' audio is longer than 30 s; the model heard its first 30 s"
        for name, n in trimmed.items()
        if n
    ]
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"
