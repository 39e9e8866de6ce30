"""``audiomcq eval``: a model on benchmark tasks, scored exactly like the official scripts, with the silent-audio
control, AC-strong subsets and the position-balanced variant.

Per task and mode (``audio``, and ``silence`` for the control) the shard's items are answered in chunks written
atomically to ``<out>/<task>/work/<mode>/part-NNNNNN.jsonl``, so a restarted run skips finished chunks (no
duplicates, no gaps). Then the official prediction file is written and scored by the benchmark's official rules;
``metrics.json`` holds those totals (so re-scoring the file gives the same numbers), the AC-strong subset's
accuracy, the accuracy in silence and the difference (the model's audio contribution), and counts of items left
unanswered because their audio is missing or unreadable. Greedy decoding; ``max_new_tokens`` defaults to 256,
room for a short reasoning before the ``<answer>`` tag.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiomcq.data.record import MCQRecord, resolve_audio
from audiomcq.errors import AudioMCQError
from audiomcq.evaluation.tasks import Task, get_task
from audiomcq.jsonio import atomic_writer, iter_jsonl, json_line, write_json
from audiomcq.scoring import extract_answer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """How an evaluation runs."""

    batch_size: int = 64
    max_new_tokens: int = 256
    chunk_size: int = 256
    shard: tuple[int, int] = (0, 1)
    silent_control: bool = True
    balanced: bool = False  # each question once per answer position; adds consistency across positions
    dtype: str = "auto"  # the model's dtype (auto: the checkpoint's own)


def load_audio(record: MCQRecord, audio_root: str | Path | None) -> tuple[str, np.ndarray | None]:
    """(``ok`` | ``missing`` | ``corrupt``, 16 kHz waveform)."""
    import soundfile as sf

    from audiomcq.audio import load_audio as decode_to_model_rate

    path = resolve_audio(record, audio_root) if audio_root is not None else Path(record.audio_path or "")
    if path is None or not path.is_file():
        return "missing", None
    try:
        wave = decode_to_model_rate(path)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:  # unreadable or undecodable data
        log.warning("%s: unreadable audio %s: %s", record.id, path, err)
        return "corrupt", None
    return ("ok", wave) if wave.size else ("corrupt", None)


def evaluate_task(
    engine: Callable[[], Any],
    task: Task,
    data: str | Path,
    audio_root: str | Path | None,
    out_dir: str | Path,
    config: EvalConfig = EvalConfig(),
    ac_strong: set[str] | None = None,
) -> dict[str, Any]:
    """Evaluate one task; ``engine`` returns the (lazily loaded) inference engine. Returns ``metrics.json``."""
    from audiomcq.data.allocation import position_balanced

    index, count = config.shard
    if not 0 <= index < count:
        raise AudioMCQError(f"shard {index}/{count}: the index must be in 0..{count - 1}")
    loaded = task.benchmark.load(data)
    records = [r for p, r in enumerate(loaded.records) if p % count == index]
    if config.balanced:
        records = position_balanced(records)
    out = Path(out_dir)
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
    for mode in ("audio", "silence") if config.silent_control else ("audio",):
        answers = _answer(engine, records, audio_root, mode, out / "work" / mode, config)
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
    write_json(out / "metrics.json", metrics)
    return metrics


def _answer(
    engine: Callable[[], Any],
    records: Sequence[MCQRecord],
    audio_root: str | Path | None,
    mode: str,
    work: Path,
    config: EvalConfig,
) -> dict[str, dict[str, Any]]:
    """``{id: {"audio": status, "output": raw, "answer": extracted}}``, from the part files, answering the chunks
    that have none yet."""
    from audiomcq.inference import Request, Sampling

    answers: dict[str, dict[str, Any]] = {}
    it = iter(records)
    for i in itertools.count():
        chunk = list(itertools.islice(it, config.chunk_size))
        if not chunk:
            break
        part = work / f"part-{i:06d}.jsonl"
        if not part.is_file():
            loaded = [load_audio(r, audio_root) for r in chunk]
            asked = [(r, w) for r, (status, w) in zip(chunk, loaded, strict=True) if status == "ok"]
            if mode == "silence":  # as long as each clip, the same silence array for equal lengths
                asked = [(r, _silence(len(w))) for r, w in asked]
            reqs = [Request(r.question, tuple(r.choices), w) for r, w in asked]
            outputs = iter(engine().generate(reqs, Sampling(config.max_new_tokens)) if reqs else [])
            with atomic_writer(part) as f:
                for r, (status, _) in zip(chunk, loaded, strict=True):
                    output = next(outputs)[0] if status == "ok" else None
                    f.write(json_line({"id": r.id, "audio": status, "output": output}) + "\n")
        rows = [row for _, row in iter_jsonl(part)]
        if [row["id"] for row in rows] != [r.id for r in chunk]:
            raise AudioMCQError(f"{part}: its items differ from the input's; the input changed since the run "
                                "started; remove the work directory")  # fmt: skip
        for row in rows:
            row["answer"] = extract_answer(row["output"]) if row["output"] is not None else None
            answers[row["id"]] = row
    return answers


_SILENCES: dict[int, np.ndarray] = {}


def _silence(samples: int) -> np.ndarray:
    """One read-only zero array per length, so the engine encodes each silence once (shared prefix)."""
    if samples not in _SILENCES:
        wave = np.zeros(samples, np.float32)
        wave.setflags(write=False)
        _SILENCES[samples] = wave
    return _SILENCES[samples]


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


def lazy_engine(model: str | Path, batch_size: int, dtype: str = "auto") -> Callable[[], Any]:
    """A function that loads the model's engine on its first call (a finished, resumed run loads no model)."""
    import functools

    from audiomcq.inference import EngineSpec, make_engine
    from audiomcq.storage import local_model

    spec = EngineSpec(local_model(model), batch_size=batch_size, dtype=dtype)
    return functools.cache(lambda: make_engine(spec))


def run_eval(
    model: str,
    tasks: dict[str, str | Path],
    audio_roots: dict[str, str | Path | None],
    out_dir: str | Path,
    config: EvalConfig = EvalConfig(),
    ac_strong: dict[str, str | Path] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on every task (name -> metadata path); writes ``<out>/<task>/…`` and ``<out>/metrics.json``
    (all tasks) and ``<out>/metrics.md``."""
    engine = lazy_engine(model, config.batch_size, config.dtype)
    out = Path(out_dir)
    results = {}
    for name, data in tasks.items():
        ids = None
        if ac_strong and name in ac_strong:
            ids = {line.strip() for line in Path(ac_strong[name]).read_text().splitlines() if line.strip()}
        results[name] = evaluate_task(engine, get_task(name), data, audio_roots.get(name), out / name, config, ids)
    summary = {"model": model, "tasks": results}
    write_json(out / "metrics.json", summary)
    (out / "metrics.md").write_text(markdown(summary))
    return summary


def markdown(summary: dict[str, Any]) -> str:
    """One row per task: accuracy with audio (official rule), AC-strong, in silence, audio contribution, unanswered."""
    lines = [f"# Evaluation of `{summary['model']}`", "",
             "| task | items | accuracy | AC-strong | silence | audio contribution | missing/corrupt audio |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, m in summary["tasks"].items():
        audio, silence = m["modes"]["audio"], m["modes"].get("silence", {})

        def pct(table: dict[str, Any] | None) -> str:
            return f"{table['accuracy']:.1f}" if table else "-"

        contribution = f"{m['audio_contribution']:+.1f}" if "audio_contribution" in m else "-"
        lines.append(f"| {name} | {m['items']} | {pct(audio.get('total'))} | {pct(audio.get('ac_strong'))} | "
                     f"{pct(silence.get('total'))} | {contribution} | "
                     f"{audio['audio_missing']}/{audio['audio_corrupt']} |")  # fmt: skip
    return "\n".join(lines) + "\n"
