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


# --- Other models' own prompt formats ------------------------------------------------------------------------------
# A filter or evaluated model of another family (Kimi-Audio, Audio Flamingo 2, ...) answers best when asked the way it
# was trained. ``render_prompt`` fills a user template; the AudioMCQ prompt above stays the default everywhere.
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PLACEHOLDERS = {
    "question": "the question text",
    "choices": "the options as a Python list repr, as the AudioMCQ prompt shows them: ['x', 'y']",
    "choices_lines": "one lettered option per line: 'A. x\\nB. y'",
    "choices_plain": "one option per line, no letters: 'x\\ny'",
    "options": "each option rendered by the spec's `option` pattern ({letter}, {choice}), joined by `option_sep`",
    "letters": "the letters in use, comma-separated: 'A, B, C, D'",
}


def template_fields(template: str) -> list[str]:
    """The placeholder names a template uses (``{{`` and ``}}`` are literal braces)."""
    import string

    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


def render_prompt(
    template: str, question: str, choices: Sequence[str], option: str = "{letter}. {choice}", option_sep: str = "\n"
) -> str:
    """A user template filled for one question (see ``PLACEHOLDERS``)."""
    if len(choices) > len(LETTERS):
        raise ValueError(f"{len(choices)} options: lettered prompts go up to {len(LETTERS)}")
    letters = LETTERS[: len(choices)]
    return template.format(
        question=question,
        choices=repr(list(choices)),
        choices_lines="\n".join(f"{k}. {c}" for k, c in zip(letters, choices, strict=True)),
        choices_plain="\n".join(choices),
        options=option_sep.join(option.format(letter=k, choice=c) for k, c in zip(letters, choices, strict=True)),
        letters=", ".join(letters),
    )


def chat_messages(user_text: str, system: str | None, audio: Any = None, *, audio_first: bool = True) -> list[dict]:
    """Chat messages for an already rendered user text: an optional system turn, then the user turn with its audio
    block before (the AudioMCQ layout) or after the text."""
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    blocks = [{"type": "audio", "audio": audio}, {"type": "text", "text": user_text}]
    messages.append({"role": "user", "content": blocks if audio_first else blocks[::-1]})
    return messages
