"""GRPO rewards of the released AudioMCQ plugin, as pure trl-compatible reward functions.

- ``accuracy`` (weight 2.0): 1.0 when the ``<answer>`` contents of completion and solution are equal after
  ``strip()`` and ``lower()``; each side falls back to its whole stripped text when it has no tag. Tags match
  case-insensitively and across newlines; no other normalisation.
- ``format`` (weight 0.5): 1.0 when the stripped completion starts with ``<answer>``, ends with ``</answer>`` and
  holds exactly one of each (case-sensitive): no text, CoT or second answer outside the tags.

Signature: ``f(completions, solution, **kwargs) -> list[float]`` as trl's GRPOTrainer calls it, ``completions``
being strings or conversational message lists and ``solution`` the dataset column. Unlike the plugin, nothing is
printed and nothing is swallowed: a malformed batch raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from audiomcq.prompts import ANSWER_CLOSE, ANSWER_OPEN

RewardFn = Callable[..., list[float]]
_TAGGED = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or the content of the last message of a conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    raise TypeError(f"a completion must be a string or a list of chat messages, not {type(completion).__name__}")


def tagged_answer(text: str) -> str:
    """What the plugin compares: the first ``<answer>`` contents (any case, newlines allowed) or the whole text."""
    match = _TAGGED.search(text)
    return (match.group(1) if match else text).strip()


def accuracy_reward(completions: Sequence[Any], solution: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
    """1.0 per completion whose answer equals the solution's, case-insensitively; else 0.0."""
    if solution is None:
        raise ValueError("accuracy reward needs the dataset's 'solution' column")
    if len(solution) != len(completions):
        raise ValueError(f"{len(completions)} completions but {len(solution)} solutions")
    return [
        1.0 if tagged_answer(completion_text(c)).lower() == tagged_answer(s).lower() else 0.0
        for c, s in zip(completions, solution, strict=True)
    ]


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 per completion that is exactly one ``<answer>…</answer>`` once stripped; else 0.0."""
    return [1.0 if _well_formed(completion_text(c).strip()) else 0.0 for c in completions]


def _well_formed(text: str) -> bool:
    return (
        text.startswith(ANSWER_OPEN)
        and text.endswith(ANSWER_CLOSE)
        and text.count(ANSWER_OPEN) == 1
        and text.count(ANSWER_CLOSE) == 1
    )


@dataclass(frozen=True)
class Reward:
    """A registered reward: its function and the weight the released GRPO script gives it."""

    name: str
    fn: RewardFn
    weight: float


REWARDS: dict[str, Reward] = {
    "accuracy": Reward("accuracy", accuracy_reward, 2.0),
    "format": Reward("format", format_reward, 0.5),
}
# The names the released ms-swift plugin registers, so recipes written against it resolve too.
ALIASES = {"external_audio_choice_accuracy": "accuracy", "external_format": "format"}


def get_reward(name: str) -> Reward:
    """A reward by its name or plugin alias; unknown names are an error listing the known ones."""
    key = ALIASES.get(name, name)
    if key not in REWARDS:
        raise KeyError(f"unknown reward {name!r}; known: {', '.join([*REWARDS, *ALIASES])}")
    return REWARDS[key]


def combined_reward(names: Sequence[str], completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """Weighted sum of the named rewards per completion (2.0·accuracy + 0.5·format tops out at 2.5)."""
    total = [0.0] * len(completions)
    for name in names:
        reward = get_reward(name)
        for i, value in enumerate(reward.fn(completions, **kwargs)):
            total[i] += reward.weight * value
    return total
