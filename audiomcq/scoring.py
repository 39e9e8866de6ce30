"""Answer extraction and matchers that agree item by item with the official benchmark scripts.

- ``extract_answer``: the R1-AQA/AudioMCQ evaluation rule: the first ``<answer>(.*?)</answer>`` (no DOTALL),
  else the raw output; stripped.
- ``string_match``: MMAU's and MMAR's official matcher. Lower-cased ``\\b\\w+\\b`` word sets; correct iff every
  answer word is in the prediction and the prediction holds no word of another choice (words shared with the
  answer excluded; a choice with the answer's exact word set is ignored). Empty predictions are wrong; a bare
  letter is never accepted.
- ``mmsu_letter``: MMSU's official parser: newlines removed, the first character if it is A-D, else the
  second-to-last; otherwise unparsable (the official script leaves such items out of the denominator).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>")
_WORD_RE = re.compile(r"\b\w+\b")
MMSU_LETTERS = "ABCD"


def extract_answer(output: str) -> str:
    """The contents of the first single-line ``<answer>…</answer>``, else the whole output; stripped."""
    match = _ANSWER_RE.search(output)
    return (match.group(1) if match else output).strip()


def tagged_answer(output: str) -> str | None:
    """The contents of the first ``<answer>…</answer>``, or None when the output has none (unparsable)."""
    match = _ANSWER_RE.search(output)
    return match.group(1).strip() if match else None


def _words(text: str) -> set[str]:
    return set(_WORD_RE.findall(text.lower()))


def string_match(answer: str, prediction: str, choices: Sequence[str]) -> bool:
    """MMAU/MMAR official verdict for one prediction (see module docstring)."""
    predicted = _words(prediction)
    if not predicted:
        return False
    expected = _words(answer)
    others: set[str] = set()
    for choice in choices:
        words = _words(choice)
        if words != expected:
            others |= words - expected
    return expected <= predicted and predicted.isdisjoint(others)


def mmsu_letter(response: str) -> str | None:
    """The letter the official MMSU parser reads from a response, or None when it finds none."""
    text = response.strip().replace("\n", "")
    if not text:
        return None
    if text[0] in MMSU_LETTERS:
        return text[0]
    if len(text) >= 2 and text[-2] in MMSU_LETTERS:
        return text[-2]
    return None
