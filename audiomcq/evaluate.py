"""Evaluate a model on MCQ records with its audio and in silence, broken down by the subsets that matter.

Answers are extracted like the AudioMCQ/R1-AQA evaluation (first ``<answer>…</answer>``, else the raw output) and
judged with the official MMAU ``string_match``. Subsets: audio-contribution labels (``strong``/``weak``, when the
records carry them), the synthetic ground truth (``text_answerable`` / ``audio_dependent``) and each family.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audiomcq.data.io import read_records
from audiomcq.data.record import MCQRecord
from audiomcq.jsonio import write_json, write_jsonl
from audiomcq.scoring import extract_answer, string_match

log = logging.getLogger(__name__)


def judge(records: Sequence[MCQRecord], outputs: Sequence[str]) -> list[bool]:
    """Whether each raw output answers its record correctly."""
    return [string_match(r.answer, extract_answer(o), r.choices) for r, o in zip(records, outputs, strict=True)]


def subsets(record: MCQRecord) -> list[str]:
    """The report groups a record belongs to (besides ``all``)."""
    groups = []
    if record.audio_contribution:
        groups.append(f"ac_{record.audio_contribution}")
    if "text_answerable" in record.extra:
        groups.append("text_answerable" if record.extra["text_answerable"] else "audio_dependent")
    if "family" in record.extra:
        groups.append(f"family_{record.extra['family']}")
    return groups


def accuracy_table(records: Sequence[MCQRecord], correct: Sequence[bool]) -> dict[str, dict[str, float]]:
    """``{group: {"accuracy": %, "count": n}}`` for ``all`` and every subset present."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record, ok in zip(records, correct, strict=True):
        for group in ("all", *subsets(record)):
            tally[group][0] += ok
            tally[group][1] += 1
    return {g: {"accuracy": 100.0 * c / n, "count": n} for g, (c, n) in sorted(tally.items())}


def evaluate_model(
    model_dir: str | Path,
    data: str | Path,
    audio_root: str | Path,
    out_dir: str | Path | None = None,
    *,
    modes: Sequence[str] = ("audio", "silence"),
    silence_seconds: float | None = None,
    batch_size: int = 64,
    max_new_tokens: int = 16,
) -> dict[str, Any]:
    """Accuracy per mode (``audio``, ``silence``: as long as each clip unless ``silence_seconds``) and subset; with
    ``out_dir``, also per-item predictions and ``metrics.json``."""
    from audiomcq.acf.probes import Clips, Probe, requests
    from audiomcq.inference import EngineSpec, Sampling, make_engine

    engine = make_engine(EngineSpec(str(model_dir), batch_size=batch_size))
    records = read_records(data)
    clips = Clips.load(records, audio_root)
    metrics: dict[str, Any] = {"model": str(model_dir), "data": str(data), "modes": {}}
    for mode in modes:
        probe = Probe("silence", silence_seconds) if mode == "silence" else Probe.parse(mode)
        reqs, _ = requests(probe, records, clips)
        outputs = [o[0] for o in engine.generate(reqs, Sampling(max_new_tokens))]
        correct = judge(records, outputs)
        metrics["modes"][mode] = accuracy_table(records, correct)
        if out_dir is not None:
            rows = [{"id": r.id, "output": o, "correct": c} for r, o, c in zip(records, outputs, correct, strict=True)]
            write_jsonl(Path(out_dir) / f"predictions-{mode.replace(':', '_')}.jsonl", rows)
    if out_dir is not None:
        write_json(Path(out_dir) / "metrics.json", metrics)
    log.info("eval %s: %s", model_dir, {m: t["all"]["accuracy"] for m, t in metrics["modes"].items()})
    return metrics
