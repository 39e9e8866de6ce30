"""How one model is asked and how its answers are read: the AudioMCQ prompt by default, or the model's own.

A filter model of another family (Kimi-Audio, Audio Flamingo 2, ...) was trained on its own prompt layout, and
asking it the AudioMCQ way measures the prompt mismatch as much as the audio's contribution. A ``PromptFormat``
carries the user template, the system prompt (or none), where the audio block goes, when generation stops, and the
parsing that maps an answer back to a choice: a letter counts only when the prompt showed letters, so the default
format keeps the official rule that a bare letter is never an answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.prompts import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    LETTERS,
    PLACEHOLDERS,
    SYSTEM_PROMPT,
    USER_TEMPLATE,
    build_messages,
    chat_messages,
    render_prompt,
    solution,
    template_fields,
    user_prompt,
)
from audiomcq.scoring import extract_answer, string_match, tagged_answer

CHOICE_FIELDS = ("choices", "choices_lines", "choices_plain", "options")
# A letter at the very start ("B", "(B)", "B.", "B) text") or after "answer/option/choice (is)" ("The answer is B").
_LEADING_LETTER = re.compile(r"^[(\[]?([A-Z])[)\]]?(?=[\s.:,)\]]|$)")
_STATED_LETTER = re.compile(
    r"(?i:\b(?:answer|option|choice))\s*(?:(?i:is)\s*)?[:：]?\s*[(\[]?([A-Z])[)\]]?(?![A-Za-z])"
)


@dataclass(frozen=True)
class PromptFormat:
    """A model's prompt layout; the defaults are the AudioMCQ prompt exactly (``template`` None)."""

    template: str | None = None
    system: str | None = SYSTEM_PROMPT
    option: str = "{letter}. {choice}"
    option_sep: str = "\n"
    stop: tuple[str, ...] | None = None  # None: stop at </answer> when the prompt asks for the tag
    audio_first: bool = True

    def __post_init__(self) -> None:
        if self.template is not None:
            fields = template_fields(self.template)
            unknown = sorted(set(fields) - set(PLACEHOLDERS))
            if unknown:
                known = sorted(PLACEHOLDERS)
                raise AudioMCQError(f"prompt template: unknown placeholder(s) {unknown}; known: {known}")
            if "question" not in fields or not set(fields) & set(CHOICE_FIELDS):
                raise AudioMCQError(
                    f"prompt template must show {{question}} and the options (one of "
                    f"{', '.join('{' + f + '}' for f in CHOICE_FIELDS)})"
                )
        unknown = sorted(set(template_fields(self.option)) - {"letter", "choice"})
        if unknown:
            raise AudioMCQError(f"option pattern: unknown placeholder(s) {unknown}; known: ['choice', 'letter']")
        if self.stop is not None and not all(isinstance(s, str) and s for s in self.stop):
            raise AudioMCQError(f"stop must be a list of non-empty strings, not {list(self.stop)!r}")

    @classmethod
    def from_spec(cls, spec: Any) -> PromptFormat:
        """The format an ``EngineSpec`` describes: its ``prompt``/``system``/``option``/``option_sep``/``stop``/
        ``audio_first``. Without ``prompt`` the system prompt defaults to AudioMCQ's, with one to none."""
        system = spec.system
        if system is None:
            system = SYSTEM_PROMPT if spec.prompt is None else ""
        stop = tuple(spec.stop) if spec.stop is not None else None
        return cls(spec.prompt, system or None, spec.option, spec.option_sep, stop, spec.audio_first)

    @property
    def is_default(self) -> bool:
        return self == DEFAULT

    @property
    def tagged(self) -> bool:
        """Whether the prompt asks for ``<answer>…</answer>``."""
        return ANSWER_OPEN in (self.template or USER_TEMPLATE) + (self.system or "")

    @property
    def lettered(self) -> bool:
        """Whether the prompt shows letters the model may answer with."""
        if self.template is None:
            return False
        fields = set(template_fields(self.template))
        return bool(fields & {"choices_lines", "letters"}) or ("options" in fields and "{letter}" in self.option)

    @property
    def stops(self) -> tuple[str, ...]:
        """Strings that end generation (kept in the output)."""
        if self.stop is not None:
            return self.stop
        return (ANSWER_CLOSE,) if self.tagged else ()

    def user_text(self, question: str, choices: Sequence[str]) -> str:
        if self.template is None:
            return user_prompt(question, choices)
        return render_prompt(self.template, question, choices, self.option, self.option_sep)

    def messages(self, question: str, choices: Sequence[str], audio: Any = None) -> list[dict[str, Any]]:
        """Chat messages in content-block form; the default format gives exactly ``build_messages``."""
        if self.is_default:
            return build_messages(question, choices, audio)
        return chat_messages(self.user_text(question, choices), self.system, audio, audio_first=self.audio_first)

    def target(self, index: int, choice: str) -> str:
        """The longest well-formed answer naming option ``index``: what the generation budget must hold."""
        text = f"{LETTERS[index]}. {choice}" if self.lettered and index < len(LETTERS) else choice
        return solution(text) if self.tagged else text

    def answer(self, output: str, choices: Sequence[str]) -> str | None:
        """The answer the output gives, as text (a letter mapped to its choice); None when it gives none."""
        content = tagged_answer(output) if self.tagged else None
        if not self.lettered:
            return content if self.tagged else (output.strip() or None)
        text = (content if content is not None else output).strip()
        named = [c for c in choices if string_match(c, text, choices)]
        if len(named) == 1:
            return named[0]
        index = letter_index(text, len(choices))
        if index is not None:
            return choices[index]
        return content  # a tag holding something else is still the model's answer, scored as text

    def prediction(self, output: str, choices: Sequence[str]) -> str:
        """What is scored: the parsed answer, else the stripped output (as the official scripts do)."""
        answer = self.answer(output, choices)
        return answer if answer is not None else extract_answer(output)


def letter_index(text: str, n: int) -> int | None:
    """The option a text names by letter ("B", "(B) ...", "B.", "The answer is B"), if it is one of the first n."""
    for pattern in (_LEADING_LETTER, _STATED_LETTER):
        match = pattern.search(text.strip())
        if match and LETTERS.index(match.group(1)) < n:
            return LETTERS.index(match.group(1))
    return None


DEFAULT = PromptFormat()
