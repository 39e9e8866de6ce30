"""Per-choice scores and the served answer.

A choice's score is the log-probability, given the prompt and the audio, that the model's reply is exactly the
training target for that choice, ``<answer>choice</answer>`` followed by end-of-turn (the SFT label of
``audiomcq.models.batch``), summed over its tokens. Rows are left-padded, so every target ends its row; only the
target positions go through the LM head, since a full-vocabulary projection of 750 audio tokens per row would
dominate memory. This full-forward path re-encodes the audio and the prompt for every choice; the server scores
from the generation's prefill instead (``audiomcq.serve.shared_pass``) and keeps this one as the reference the
shared pass is tested and benchmarked against. The served answer is the choice the generated reply names
(``answer_source`` "generated"), else the highest-scoring choice ("scored"), so ``index`` always points at a real
choice and a client can tell which of the two it got.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from audiomcq.prompts import solution
from audiomcq.scoring import extract_answer, string_match

ROWS_PER_FORWARD = 16  # (question, choice) rows in one scoring forward: each row carries its audio features


@dataclass(frozen=True)
class Answer:
    """What the server returns for one question."""

    answer: str
    index: int
    raw: str
    scores: list[float]
    answer_source: str


def choice_scores(
    model: Any, processor: Any, items: Sequence[tuple[str, Sequence[str], np.ndarray]], rows: int = ROWS_PER_FORWARD
) -> list[list[float]]:
    """The log-likelihood of each choice's target completion, per ``(question, choices, 16 kHz wave)`` item."""
    from audiomcq.models.batch import prompt_text

    prompts = [(prompt_text(processor, q, c), c, [w]) for q, c, w in items]
    return prompt_scores(model, processor, prompts, rows)


def prompt_scores(
    model: Any,
    processor: Any,
    items: Sequence[tuple[str, Sequence[str], Sequence[np.ndarray]]],
    rows: int = ROWS_PER_FORWARD,
) -> list[list[float]]:
    """The same log-likelihoods for rendered prompts: ``(prompt text, choices, its clips)`` per item."""
    import torch

    from audiomcq.audio import SR

    tok = processor.tokenizer
    flat: list[tuple[int, str, str, Sequence[np.ndarray]]] = []
    for i, (prompt, choices, waves) in enumerate(items):
        flat.extend((i, prompt, solution(c) + tok.eos_token, waves) for c in choices)
    scores: list[list[float]] = [[] for _ in items]
    model.eval()
    for start in range(0, len(flat), rows):
        chunk = flat[start : start + rows]
        waves = [w for *_, ws in chunk for w in ws]
        audio: dict[str, Any] = {"audio": waves, "sampling_rate": SR} if waves else {}
        batch = processor(
            text=[p + t for _, p, t, _ in chunk], padding=True, padding_side="left", return_tensors="pt", **audio
        ).to(model.device)
        with torch.inference_mode():
            hidden = model.model(**batch, use_cache=False)[0]
            for row, (i, _, target, _) in enumerate(chunk):
                n = len(tok(target, add_special_tokens=False)["input_ids"])
                logits = model.lm_head(hidden[row, -n - 1 : -1]).float()
                picked = torch.log_softmax(logits, dim=-1).gather(-1, batch["input_ids"][row, -n:, None])
                scores[i].append(float(picked.sum()))
    return scores


def pick_answer(raw: str, choices: Sequence[str], scores: Sequence[float]) -> tuple[int, str]:
    """The choice the reply names (exactly, else by the MMAU/MMAR word match when one choice fits) with source
    "generated", else the highest score with source "scored"."""
    said = extract_answer(raw).lower()
    for rule in (lambda c: c.strip().lower() == said, lambda c: string_match(c, said, choices)):
        hits = [i for i, c in enumerate(choices) if rule(c)]
        if len(hits) == 1:
            return hits[0], "generated"
    finite = [s if np.isfinite(s) else -np.inf for s in scores]
    return int(np.argmax(finite)), "scored"
