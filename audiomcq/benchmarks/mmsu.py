"""MMSU (Wang et al. 2025, HF ``ddwang2000/MMSU``): JSONL with ``choice_a``..``choice_d`` and ``answer_gt`` (text).

Two scoring modes:

- ``letter`` (official ``mmsu_evaluation.py``): parse a letter from ``response`` (first character, else the
  second-to-last); an empty or ``'None'`` response is wrong; an unparsable one is left out of the official
  denominator (reported as ``unparsed``; the strict number counts it wrong). Correct iff ``choice_<letter>`` equals
  ``answer_gt``.
- ``text``: MMAU-style ``string_match`` of the response against the choices, for models that answer with the
  choice text (AudioMCQ models do; the official letter parser cannot score them).

Report: category, sub-category, and category x sub-category.
"""

from __future__ import annotations

from typing import Any

from audiomcq.benchmarks.base import Benchmark
from audiomcq.data.record import MCQRecord
from audiomcq.scoring import MMSU_LETTERS, mmsu_letter, string_match

CHOICE_KEYS = tuple(f"choice_{c.lower()}" for c in MMSU_LETTERS)


class MMSU(Benchmark):
    """MMSU, 5,000 spoken-language questions in 47 tasks."""

    name = "mmsu"
    source_dataset = "MMSU"
    prediction_keys = ("response",)
    breakdowns = ("category", "sub-category", "category/sub-category")
    missing_prediction = "wrong"

    def __init__(self, mode: str = "letter") -> None:
        if mode not in ("letter", "text"):
            raise ValueError(f"MMSU mode must be 'letter' or 'text', not {mode!r}")
        self.mode = mode

    def to_record(self, raw: dict[str, Any]) -> MCQRecord:
        """Choices from ``choice_a``..``choice_d`` (trailing empty ones dropped), answer from ``answer_gt``."""
        raw_choices = [raw.get(k) for k in CHOICE_KEYS]
        while raw_choices and raw_choices[-1] in (None, ""):
            raw_choices.pop()
        if not raw_choices:
            raise ValueError("no choice_a..choice_d")
        if any(c is None for c in raw_choices):
            raise ValueError("choices have a gap (a missing choice before a present one)")
        consumed = {"id", "question", "answer_gt", "audio_path", *CHOICE_KEYS}
        extra = {k: v for k, v in raw.items() if k not in consumed}
        return MCQRecord.from_dict(
            {
                "id": raw["id"],
                "source_dataset": self.source_dataset,
                "audio_path": _audio_path(raw),
                "question": raw["question"],
                "choices": raw_choices,
                "answer": raw.get("answer_gt", ""),
                "question_type": "speech",
                **extra,
            }
        )

    def to_raw(self, record: MCQRecord) -> dict[str, Any]:
        """The MMSU line: choices back into ``choice_a``..``choice_d`` and the answer into ``answer_gt``."""
        out: dict[str, Any] = {"id": record.id, "audio_path": record.audio_path, "question": record.question}
        out.update(
            {key: (record.choices[i] if i < len(record.choices) else None) for i, key in enumerate(CHOICE_KEYS)}
        )
        out["answer_gt"] = record.answer
        out.update(record.extra)
        return out

    def verdict(self, record: MCQRecord, prediction: str | None) -> bool | None:
        """Letter mode reproduces the official parser; text mode uses MMAU's string_match.

        A JSON null response is left out like an unparsable one (the official script cannot read it); a missing
        ``response`` key counts wrong.
        """
        if self.mode == "text":
            return string_match(record.answer, prediction or "", record.choices)
        if prediction is None:
            return None
        text = prediction.strip().replace("\n", "")
        if not text or text == "None":
            return False
        letter = mmsu_letter(text)
        if letter is None:
            return None
        index = MMSU_LETTERS.index(letter)
        return index < len(record.choices) and record.choices[index] == record.answer


def _audio_path(raw: dict[str, Any]) -> str | None:
    """MMSU exports carry the audio as ``audio_path``, a path string in ``audio``, or an HF ``{"path": …}``."""
    if raw.get("audio_path"):
        return str(raw["audio_path"])
    audio = raw.get("audio")
    if isinstance(audio, str):
        return audio
    if isinstance(audio, dict) and audio.get("path"):
        return str(audio["path"])
    return None
