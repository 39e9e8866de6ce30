"""Audio-contribution filtering (ACF): K filter models answer every question with the audio replaced by silence;
a question at least ``min_correct`` of them still get right is *weak* (answerable without listening), else *strong*.

Writes ``labelled.jsonl`` (every record with its ``audio-contribution`` label and per-model silent answers),
``weak.jsonl``, ``strong.jsonl`` and ``stats.json``. When the records carry the synthetic ground truth
(``text_answerable``), the stats also score the labels against it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audiomcq.data.io import read_records, write_records
from audiomcq.data.record import AC_KEY, MCQRecord
from audiomcq.evaluate import judge
from audiomcq.jsonio import write_json

log = logging.getLogger(__name__)


def run_filter(
    data: str | Path,
    model_dirs: Sequence[str | Path],
    audio_root: str | Path,
    out_dir: str | Path,
    *,
    min_correct: int = 2,
    silence_seconds: float | None = 30.0,
    batch_size: int = 64,
    max_new_tokens: int = 16,
) -> dict[str, Any]:
    """Label ``data`` weak/strong with the silent answers of the models in ``model_dirs``."""
    from audiomcq.models import load_model
    from audiomcq.models.batch import AudioMode, generate_answers

    if not 1 <= min_correct <= len(model_dirs):
        raise ValueError(f"min_correct must be in 1..{len(model_dirs)}, got {min_correct}")
    records = read_records(data)
    mode = AudioMode("silence", silence_seconds)
    verdicts: list[list[bool]] = []
    per_model: dict[str, Any] = {}
    for i, model_dir in enumerate(model_dirs):
        loaded = load_model(model_dir)
        outputs = generate_answers(
            loaded.model, loaded.processor, records, audio_root, mode, batch_size, max_new_tokens
        )
        correct = judge(records, outputs)
        verdicts.append(correct)
        name = f"filter{i}"
        per_model[name] = {"path": str(model_dir), **_silent_accuracy(records, correct)}
        for record, output, ok in zip(records, outputs, correct, strict=True):
            record.extra.setdefault("acf", {"silent": {}})["silent"][name] = {"output": output, "correct": ok}
    for j, record in enumerate(records):
        votes = sum(v[j] for v in verdicts)
        record.audio_contribution = "weak" if votes >= min_correct else "strong"
        record.extra["acf"].update({"votes": votes, "score": votes / len(model_dirs)})
    out = Path(out_dir)
    write_records(out / "labelled.jsonl", records)
    write_records(out / "weak.jsonl", (r for r in records if r.audio_contribution == "weak"))
    write_records(out / "strong.jsonl", (r for r in records if r.audio_contribution == "strong"))
    stats = {
        "rule": f"weak if >= {min_correct} of {len(model_dirs)} correct in silence",
        "silence_seconds": silence_seconds,
        "count": len(records),
        "weak": sum(r.audio_contribution == "weak" for r in records),
        "strong": sum(r.audio_contribution == "strong" for r in records),
        "models": per_model,
        "ground_truth": ground_truth_agreement(records, len(model_dirs), min_correct),
    }
    write_json(out / "stats.json", stats)
    log.info("ACF %s: %d weak / %d strong", data, stats["weak"], stats["strong"])
    return stats


def _silent_accuracy(records: Sequence[MCQRecord], correct: Sequence[bool]) -> dict[str, Any]:
    out: dict[str, Any] = {"all": 100.0 * sum(correct) / len(correct)}
    for flag, name in ((True, "text_answerable"), (False, "audio_dependent")):
        picked = [c for r, c in zip(records, correct, strict=True) if r.extra.get("text_answerable") is flag]
        if picked:
            out[name] = 100.0 * sum(picked) / len(picked)
    return out


def ground_truth_agreement(records: Sequence[MCQRecord], k: int, m: int) -> dict[str, Any] | None:
    """How the labels compare with ``text_answerable`` (None when the records have no ground truth).

    The chance expectation of labelling an audio-dependent item weak is given two ways: models guessing
    independently among n options, and models sharing one constant silent answer (what tiny models and, per the
    paper's analysis, real LALMs tend to do): then the rate is simply 1/n.
    """
    truth = [r.extra.get("text_answerable") for r in records]
    if any(t is None for t in truth):
        return None
    weak = [r.audio_contribution == "weak" for r in records]
    text_items = [w for w, t in zip(weak, truth, strict=True) if t]
    audio_items = [(w, len(r.choices)) for w, t, r in zip(weak, truth, records, strict=True) if not t]
    independent = [_at_least(m, k, 1 / n) for _, n in audio_items]
    return {
        "agreement": 100.0 * sum(w == t for w, t in zip(weak, truth, strict=True)) / len(records),
        "text_answerable_labelled_weak": 100.0 * sum(text_items) / len(text_items) if text_items else None,
        "audio_dependent_labelled_weak": 100.0 * sum(w for w, _ in audio_items) / len(audio_items)
        if audio_items
        else None,
        "chance_independent": 100.0 * sum(independent) / len(independent) if independent else None,
        "chance_shared_constant": 100.0 * sum(1 / n for _, n in audio_items) / len(audio_items)
        if audio_items
        else None,
    }


def _at_least(m: int, k: int, p: float) -> float:
    from math import comb

    return sum(comb(k, j) * p**j * (1 - p) ** (k - j) for j in range(m, k + 1))


__all__ = ["AC_KEY", "ground_truth_agreement", "run_filter"]
