"""DCASE 2025 Task 5 (audio question answering): a folder of one JSON file per question.

Keys (as used by participants' code): ``audio_url``, ``question``, ``choice`` (list), ``answer``,
``question_type``; the question id is the file stem (the submission CSV's ``question`` column). Choices and answers
may carry ``"A."``-style prefixes: when every choice has the next letter as a prefix, the record's choices are the
texts without it, and the answer is resolved to a choice by exact text, by text without its prefix, or by its
letter. The raw ``choice`` list and ``answer`` are kept so a submission can be written in the original form.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from audiomcq.benchmarks.base import Benchmark
from audiomcq.data.record import MCQRecord
from audiomcq.errors import AudioMCQError
from audiomcq.jsonio import load_json

_PREFIX = re.compile(r"^\s*\(?([A-Za-z])\s*[.):]\s*")
_LETTER_ONLY = re.compile(r"^\s*\(?([A-Za-z])\s*[.):]?\s*$")


class DCASE2025(Benchmark):
    """DCASE 2025 Task 5: bioacoustics, temporal soundscapes and complex QA parts."""

    name = "dcase2025"
    source_dataset = "DCASE2025-Task5"
    prediction_keys = ("answer_prediction", "model_prediction")
    breakdowns = ("question_type",)

    def iter_raw(self, path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
        """One item per ``*.json`` file under ``path`` (sorted), with ``id`` = file stem unless the file has one."""
        root = Path(path)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*.json") if p.is_file())
        if not files:
            raise AudioMCQError(f"{path}: no DCASE question files (*.json)")
        for file in files:
            obj = load_json(file)
            if isinstance(obj, dict) and "id" not in obj:
                obj = {"id": file.stem, **obj}
            yield str(file), obj

    def to_record(self, raw: dict[str, Any]) -> MCQRecord:
        """Strip consistent letter prefixes from the choices and resolve the answer to a choice text."""
        raw_choices = raw["choice"]
        if not isinstance(raw_choices, list) or not all(isinstance(c, str) for c in raw_choices):
            raise ValueError("field 'choice' must be a list of strings")
        choices = strip_letter_prefixes(raw_choices)
        raw_answer = raw.get("answer", "")
        index = resolve_answer(raw_answer, raw_choices, choices)
        consumed = {"id", "question", "answer", "audio_url"}
        return MCQRecord.from_dict(
            {
                "id": raw["id"],
                "source_dataset": self.source_dataset,
                "audio_path": raw.get("audio_url"),
                "question": raw["question"],
                "choices": choices,
                "answer": choices[index] if index is not None else raw_answer,
                **{k: v for k, v in raw.items() if k not in consumed},
                "dcase_answer": raw_answer,
            }
        )

    def to_raw(self, record: MCQRecord) -> dict[str, Any]:
        """The question file as it was; after a reorder (balancing, shuffling) the choices are re-lettered and the
        answer is given as the full re-lettered choice."""
        extra = {k: v for k, v in record.extra.items() if k != "dcase_answer"}
        raw_choices = list(extra.get("choice", record.choices))
        answer = record.extra.get("dcase_answer", record.answer)
        if strip_letter_prefixes(raw_choices) != record.choices:
            prefixed = strip_letter_prefixes(raw_choices) != raw_choices
            raw_choices = [
                f"{string.ascii_uppercase[i]}. {c}" if prefixed else c for i, c in enumerate(record.choices)
            ]
            index = record.answer_index
            answer = raw_choices[index] if index is not None else record.answer
        out = {
            "id": record.id,
            "audio_url": record.audio_path,
            "question": record.question,
            **extra,
            "choice": raw_choices,
            "answer": answer,
        }
        if record.question_type is not None:
            out["question_type"] = record.question_type
        return out


def strip_letter_prefixes(choices: list[str]) -> list[str]:
    """Choices without ``A.``/``(B)``/``C)`` prefixes, but only when every choice carries the next letter."""
    letters = string.ascii_uppercase
    stripped = []
    for i, choice in enumerate(choices):
        match = _PREFIX.match(choice)
        if not match or i >= len(letters) or match.group(1).upper() != letters[i]:
            return list(choices)
        stripped.append(choice[match.end() :].strip())
    return stripped


def resolve_answer(answer: str, raw_choices: list[str], choices: list[str]) -> int | None:
    """Index of the choice an answer names: exact text, text without a prefix, or a bare letter; else None."""
    if not isinstance(answer, str) or not answer.strip():
        return None
    for candidates in (raw_choices, choices):
        if answer in candidates:
            return candidates.index(answer)
    match = _PREFIX.match(answer)
    if match and answer[match.end() :].strip():
        # "B. text": the text decides; a letter that disagrees with it is not trusted.
        rest = answer[match.end() :].strip()
        return choices.index(rest) if rest in choices else None
    letter = _LETTER_ONLY.match(answer)
    if letter:
        index = string.ascii_uppercase.index(letter.group(1).upper())
        if index < len(choices):
            return index
    return None
