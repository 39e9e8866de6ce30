"""The MCQ record: the one shape every stage reads and writes, and the rules a valid record obeys.

Fields follow the AudioMCQ JSONL release (``id``, ``source_dataset``, ``audio_path``, ``question``, ``choices``,
``answer`` as the choice text, ``audio-contribution``), plus the question type and the two CoT annotations.
Unknown fields are kept in ``extra`` and written back unchanged, so a record survives any stage it passes through.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

AC_KEY = "audio-contribution"
AC_VALUES = ("weak", "strong")
# Canonical JSON keys, in the order they are written. The release's names for the type and CoT fields are
# unconfirmed; these are ours, and anything else in a file is preserved as an extra field.
REQUIRED_KEYS = ("id", "question", "choices", "answer")
OPTIONAL_KEYS = ("source_dataset", "audio_path", "question_type", AC_KEY, "structured_cot", "simple_cot")
_ATTR = {AC_KEY: "audio_contribution"}
# Question plus choices, in characters. The longest real benchmark item (MMAR) holds under 800; a record far beyond
# this is corrupt, and asking it of a model with a large context would build a prompt of millions of tokens (an
# attention mask of hundreds of GB) instead of failing.
MAX_TEXT_CHARS = 16_384


@dataclass(frozen=True)
class Problem:
    """One reason a record breaks the contract: a stable ``code`` for counting and a message for people."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class MCQRecord:
    """One audio multiple-choice question; ``answer`` is the text of the correct choice, never a letter."""

    id: str
    question: str
    choices: list[str]
    answer: str
    source_dataset: str | None = None
    audio_path: str | None = None
    question_type: str | None = None
    audio_contribution: str | None = None
    structured_cot: str | None = None
    simple_cot: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Any) -> MCQRecord:
        """Build a record from a JSON object; raises ValueError naming the field when the shape is wrong."""
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, found {type(obj).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in obj]
        if missing:
            raise ValueError(f"missing required field(s) {', '.join(missing)}")
        rec_id = obj["id"]
        if isinstance(rec_id, bool) or not isinstance(rec_id, str | int) or str(rec_id) == "":
            raise ValueError(f"field 'id' must be a non-empty string or integer, found {rec_id!r}")
        choices = obj["choices"]
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise ValueError("field 'choices' must be a list of strings")
        for key in ("question", "answer"):
            if not isinstance(obj[key], str):
                raise ValueError(f"field {key!r} must be a string, found {type(obj[key]).__name__}")
        kwargs: dict[str, Any] = {}
        for key in OPTIONAL_KEYS:
            value = obj.get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"field {key!r} must be a string or null, found {type(value).__name__}")
            kwargs[_ATTR.get(key, key)] = value
        known = set(REQUIRED_KEYS) | set(OPTIONAL_KEYS)
        extra = {k: v for k, v in obj.items() if k not in known}
        return cls(
            id=str(rec_id),
            question=obj["question"],
            choices=list(choices),
            answer=obj["answer"],
            extra=extra,
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: canonical fields first (optional ones only when set), then extras in their order."""
        out: dict[str, Any] = {
            "id": self.id,
            "source_dataset": self.source_dataset,
            "audio_path": self.audio_path,
            "question": self.question,
            "choices": list(self.choices),
            "answer": self.answer,
        }
        for key in OPTIONAL_KEYS:
            out[key] = getattr(self, _ATTR.get(key, key))
        out = {k: v for k, v in out.items() if v is not None or k in REQUIRED_KEYS}
        out.update(self.extra)
        return out

    def get(self, key: str, default: Any = None) -> Any:
        """A field by its JSON key, canonical or extra, so breakdowns can name any field."""
        if key in REQUIRED_KEYS or key in OPTIONAL_KEYS:
            value = getattr(self, _ATTR.get(key, key))
            return default if value is None else value
        return self.extra.get(key, default)

    @property
    def answer_index(self) -> int | None:
        """Position of the first choice equal to the answer, or None when the answer is not a choice."""
        try:
            return self.choices.index(self.answer)
        except ValueError:
            return None

    def with_choices(self, choices: Sequence[str], new_id: str, **extra: Any) -> MCQRecord:
        """A copy with reordered choices and a new id; the answer text and every other field are kept."""
        return replace(self, id=new_id, choices=list(choices), extra={**self.extra, **extra})


_PUNCT_OR_SPACE = re.compile(r"\s+")


def normalize_choice(text: str) -> str:
    """The form two choices are compared in: NFKC, case-folded, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return _PUNCT_OR_SPACE.sub(" ", text).strip()


def text_chars(record: MCQRecord) -> int:
    """Characters of the question and every choice: what bounds the prompt a record builds."""
    return len(record.question) + sum(len(c) for c in record.choices)


def text_too_long(record: MCQRecord) -> Problem | None:
    """A problem when the question and choices exceed ``MAX_TEXT_CHARS``."""
    chars = text_chars(record)
    if chars <= MAX_TEXT_CHARS:
        return None
    limit = f"{MAX_TEXT_CHARS:,}"
    return Problem("text_too_long", f"question and choices hold {chars:,} characters, more than the {limit} allowed")


def validate(record: MCQRecord, audio_root: str | Path | None = None) -> list[Problem]:
    """Every rule the record breaks (empty when valid). The audio file is checked only when a root is given."""
    problems: list[Problem] = []
    too_long = text_too_long(record)
    if too_long is not None:
        problems.append(too_long)
    if not record.question.strip():
        problems.append(Problem("empty_question", "question is empty"))
    if len(record.choices) < 2:
        problems.append(Problem("too_few_choices", f"{len(record.choices)} choice(s), need at least 2"))
    empty = [i for i, c in enumerate(record.choices) if not c.strip()]
    if empty:
        problems.append(Problem("empty_choice", f"choice(s) at position {empty} are empty"))
    occurrences = record.choices.count(record.answer)
    if not record.answer:
        problems.append(Problem("no_answer", "answer is empty (a hidden-answer split cannot be trained or scored)"))
    elif occurrences == 0:
        problems.append(Problem("answer_not_in_choices", f"answer {record.answer!r} is not one of the choices"))
    elif occurrences > 1:
        problems.append(Problem("answer_repeated", f"answer {record.answer!r} occurs {occurrences} times"))
    collisions = colliding_choices(record.choices)
    if collisions:
        shown = "; ".join(" = ".join(repr(c) for c in group) for group in collisions)
        problems.append(Problem("choices_collide", f"choices equal after normalisation: {shown}"))
    if record.audio_contribution is not None and record.audio_contribution not in AC_VALUES:
        problems.append(
            Problem("bad_audio_contribution", f"{AC_KEY} is {record.audio_contribution!r}, expected weak or strong")
        )
    if audio_root is not None:
        problems.extend(check_audio(record, audio_root))
    return problems


def colliding_choices(choices: Sequence[str]) -> list[list[str]]:
    """Groups of choices (2 or more) that normalise to the same text, in first-seen order."""
    groups: dict[str, list[str]] = {}
    for choice in choices:
        groups.setdefault(normalize_choice(choice), []).append(choice)
    return [group for group in groups.values() if len(group) > 1]


def resolve_audio(record: MCQRecord, audio_root: str | Path) -> Path | None:
    """The audio file's path under ``audio_root`` (absolute paths are kept), or None when there is no path."""
    if not record.audio_path:
        return None
    path = Path(record.audio_path)
    return path if path.is_absolute() else Path(audio_root) / path


def check_audio(record: MCQRecord, audio_root: str | Path) -> list[Problem]:
    """A problem when the record has no audio path or its file is missing or empty under the root."""
    path = resolve_audio(record, audio_root)
    if path is None:
        return [Problem("no_audio_path", "record has no audio_path")]
    if not path.is_file():
        return [Problem("audio_missing", f"audio file not found: {path}")]
    if path.stat().st_size == 0:
        return [Problem("audio_empty", f"audio file is empty: {path}")]
    return []


def check_clip(record: MCQRecord, audio_root: str | Path, long_audio: str = "refuse") -> tuple[list[Problem], bool]:
    """``check_audio`` plus decoding the clip: problems for a file a model cannot hear (unreadable, empty, too short,
    NaN/inf or absurd samples) and, with ``long_audio="refuse"``, for one longer than the models' window; with
    ``"trim"`` such a clip is no problem and the second value says it will be heard cut to the window."""
    from audiomcq.audio import SR, WINDOW_SECONDS, AudioError, load_checked

    problems = check_audio(record, audio_root)
    path = resolve_audio(record, audio_root)
    if problems or path is None:
        return problems, False
    try:
        seconds = load_checked(path).size / SR
    except AudioError as err:
        return [Problem(f"audio_{err.code}", f"{path}: {err.reason}")], False
    if seconds <= WINDOW_SECONDS:
        return [], False
    if long_audio == "trim":
        return [], True
    return [
        Problem(
            "audio_too_long",
            f"{path}: the audio lasts {seconds:.1f} s; a model hears only the first "
            f"{WINDOW_SECONDS:g} s (--long-audio trim keeps such records, counted)",
        )
    ], False
