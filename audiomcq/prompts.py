"""The one prompt every stage uses: the AudioMCQ model-card system prompt and the R1-AQA user prompt.

Training, filtering, evaluation and serving all build prompts here, so a model is always asked the question the
way it was trained on it. The choices are rendered as a Python list repr (``['A', 'B']``), exactly as the released
model card and R1-AQA do; the audio block comes first in the user turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SYSTEM_PROMPT = "You are an audio understanding model that answers multiple choice questions based on audio content."
USER_TEMPLATE = (
    "{question} Please choose the answer from the following options: {choices}. "
    "Output the final answer in <answer> </answer>."
)
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"


def user_prompt(question: str, choices: Sequence[str]) -> str:
    """The plain user text for one question (no audio placeholder, no chat template)."""
    return USER_TEMPLATE.format(question=question, choices=repr(list(choices)))


def build_messages(
    question: str,
    choices: Sequence[str],
    audio: Any = None,
    *,
    system: bool = True,
) -> list[dict[str, Any]]:
    """Chat messages in the content-block form that HF processors and OpenAI-style servers accept.

    Args:
        question: the question text.
        choices: the options, in the order the model should see them.
        audio: what the audio block carries (a path, a URL, an array); the block is present even when None so
            the prompt's token layout never depends on whether audio was attached.
        system: include the model-card system prompt (the released training scripts always do).
    """
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "audio", "audio": audio}, {"type": "text", "text": user_prompt(question, choices)}],
        }
    )
    return messages


def clean_messages(messages: Any) -> Any:
    """Messages without None-valued keys, in messages and content blocks.

    Arrow-backed datasets (trl's prompt column) give every content block every key any block has, filling the
    missing ones with None; the real Qwen templates test ``'audio' in block``, so a text block carrying
    ``audio: None`` would render as one more audio placeholder."""
    if not isinstance(messages, list):
        return messages
    out = []
    for message in messages:
        message = {k: v for k, v in message.items() if v is not None}
        if isinstance(message.get("content"), list):
            message["content"] = [{k: v for k, v in b.items() if v is not None} for b in message["content"]]
        out.append(message)
    return out


def solution(answer: str) -> str:
    """The target completion for an answer text: ``<answer>text</answer>`` (SFT label and GRPO solution)."""
    return f"{ANSWER_OPEN}{answer}{ANSWER_CLOSE}"
