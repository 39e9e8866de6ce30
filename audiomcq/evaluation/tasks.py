"""Evaluation tasks: a benchmark adapter, where its metadata usually lives, and how its predictions are written.

A task writes every item in the benchmark's own format with the model's answer under the key the official
script reads (MMAU ``model_output``, MMAR ``answer_prediction``, MMSU ``response``), so the official scripts can
re-score the file; the raw model output goes beside it as ``raw_output``. The answer written is the one AudioMCQ's
evaluation extracts (the ``<answer>`` tag, else the whole output; a letter mapped to its choice for a model asked with
lettered options), which is also what our metrics score. An item whose audio is missing or unreadable, or that was
too long for the model's context (``skipped: over_length``), gets no prediction key: it is reported as such, never
scored as if answered. An answer that hit the generation budget carries ``truncated: true``.
Adding a task is one entry in ``TASKS`` (plus an adapter in ``audiomcq.benchmarks`` for a new format).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiomcq.benchmarks import DCASE2025, MMAR, MMAU, MMSU, Benchmark
from audiomcq.data.record import MCQRecord
from audiomcq.errors import AudioMCQError
from audiomcq.jsonio import atomic_writer, write_jsonl
from audiomcq.scoring import string_match


class Synthetic(Benchmark):
    """Our own JSONL records (the embedded default's held-out split, checkpoint-selection sets), scored with MMAU's
    ``string_match``. Besides the question type and the audio-contribution label, the synthetic corpus's ground
    truth breaks the accuracy down: ``ground_truth`` (``text_answerable`` or ``audio_dependent``, from the record's
    ``text_answerable``) and ``family`` (the generator of the item)."""

    name = "synthetic"
    source_dataset = "synthetic"
    prediction_keys = ("model_output",)
    breakdowns = ("question_type", "audio-contribution", "ground_truth", "family")

    def group_field(self, record: MCQRecord, name: str) -> Any:
        if name == "ground_truth":
            flag = record.get("text_answerable")
            return None if flag is None else "text_answerable" if flag else "audio_dependent"
        return record.get(name)

    def to_record(self, raw: dict[str, Any]) -> MCQRecord:
        return MCQRecord.from_dict(raw)

    def to_raw(self, record: MCQRecord) -> dict[str, Any]:
        return record.to_dict()


@dataclass(frozen=True)
class Task:
    """One evaluable benchmark split."""

    name: str
    make: Callable[[], Benchmark]
    default_file: str  # the metadata's usual name under a data directory
    layout: str = "jsonl"  # how the prediction file is written: json (a list), jsonl, or dcase (JSONL + CSV)
    hidden_answers: bool = False  # MMAU-test: export for the official server, score nothing here

    @property
    def benchmark(self) -> Benchmark:
        return self.make()

    def predictions_path(self, out_dir: Path, mode: str) -> Path:
        suffix = ".json" if self.layout == "json" else ".jsonl"
        return out_dir / f"predictions-{mode}{suffix}"

    def write_predictions(
        self, records: Sequence[MCQRecord], answers: dict[str, dict[str, Any]], path: Path
    ) -> dict[str, int]:
        """Every item in the benchmark's format, with the prediction key where the model answered; returns how many
        items were answered (and of those, truncated, or heard cut to the models' window) and how many were left
        unanswered for missing/corrupt audio or for being too long for the model."""
        bench = self.benchmark
        counts = {
            "answered": 0,
            "audio_missing": 0,
            "audio_corrupt": 0,
            "over_length": 0,
            "truncated": 0,
            "audio_trimmed": 0,
        }
        key = bench.prediction_keys[0]
        rows = []
        for record in records:
            row = bench.to_raw(record)
            cell = answers[record.id]
            if cell.get("over_length"):
                row["skipped"] = "over_length"
                counts["over_length"] += 1
            elif cell["audio"] == "ok":
                row[key], row["raw_output"] = cell["answer"], cell["output"]
                counts["answered"] += 1
                if cell.get("truncated"):
                    row["truncated"] = True
                    counts["truncated"] += 1
                counts["audio_trimmed"] += bool(cell.get("audio_trimmed"))
            else:
                row["audio_status"] = cell["audio"]
                counts[f"audio_{cell['audio']}"] += 1
            rows.append(row)
        if self.layout == "json":
            with atomic_writer(path) as f:
                json.dump(rows, f, ensure_ascii=False, indent=1)
        else:
            write_jsonl(path, rows)
        if self.layout == "dcase":
            write_dcase_submission(records, answers, path.with_suffix(".csv"))
        return counts

    def score(self, path: Path) -> dict[str, Any] | None:
        """The official scoring of a prediction file (None for hidden-answer splits)."""
        if self.hidden_answers:
            return None
        bench = self.benchmark
        if self.layout == "dcase":  # the predictions are one JSONL file, not a folder of question files
            bench.iter_raw = lambda p: Benchmark.iter_raw(bench, p)  # type: ignore[method-assign]
        return bench.score(path)


def write_dcase_submission(records: Sequence[MCQRecord], answers: dict[str, dict[str, Any]], path: Path) -> None:
    """DCASE 2025 Task 5's submission CSV: ``question`` (the question id) and ``answer`` (the chosen choice as the
    question file spells it, prefix included; empty when the answer matches no choice or the audio is missing)."""
    with atomic_writer(path) as f:
        writer = csv.writer(f)
        writer.writerow(["question", "answer"])
        for record in records:
            cell = answers[record.id]
            raw_choices = list(record.extra.get("choice", record.choices))
            chosen = ""
            if cell["audio"] == "ok" and not cell.get("over_length"):
                index = next(
                    (i for i, c in enumerate(record.choices) if string_match(c, cell["answer"], record.choices)), None
                )
                chosen = raw_choices[index] if index is not None else ""
            writer.writerow([record.id, chosen])


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("mmau-test-mini", MMAU, "mmau-test-mini.json", layout="json"),
        Task("mmau-test", MMAU, "mmau-test.json", layout="json", hidden_answers=True),
        Task("mmar", MMAR, "MMAR-meta.jsonl"),
        Task("mmsu", lambda: MMSU(mode="text"), "mmsu.jsonl"),
        Task("mmsu-letter", lambda: MMSU(mode="letter"), "mmsu.jsonl"),
        Task("dcase2025", DCASE2025, "dcase2025", layout="dcase"),
        Task("synthetic", Synthetic, "eval.jsonl"),
    )
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise AudioMCQError(f"unknown evaluation task {name!r}; known: {', '.join(TASKS)}") from None
