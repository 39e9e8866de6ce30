"""Turning MCQ records into model batches, for training and for answering, with the audio (or silence) attached.

One code path renders every prompt (``audiomcq.prompts`` through the processor's chat template) and attaches the
waveform, so SFT, filtering, evaluation and serving feed a model identically. ``AudioSFTCollator`` exists because
trl's collators drop audio: with them SFT trains audio-blind (ml-stack §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audiomcq.audio import SR, load_audio
from audiomcq.data.record import MCQRecord
from audiomcq.prompts import build_messages, solution


def load_waveform(record: MCQRecord, audio_root: str | Path | None) -> np.ndarray:
    """The record's clip as 16 kHz mono (a relative path is taken under ``audio_root``)."""
    path = Path(record.audio_path or "")
    if audio_root is not None and not path.is_absolute():
        path = Path(audio_root) / path
    return load_audio(path)


def prompt_text(processor: Any, question: str, choices: Sequence[str]) -> str:
    """The chat-template text up to the assistant turn, with one audio placeholder."""
    return processor.apply_chat_template(build_messages(question, choices), add_generation_prompt=True, tokenize=False)


def encode_prompts(processor: Any, texts: list[str], waves: list[np.ndarray]) -> Any:
    """Left-padded token ids plus audio features for a batch of prompt texts."""
    return processor(text=texts, audio=waves, sampling_rate=SR, padding=True, padding_side="left", return_tensors="pt")


def sft_target(answer: str, eos: str) -> str:
    """The SFT label text after the prompt: ``<answer>…</answer>``, the end-of-turn token and its newline."""
    return solution(answer) + eos + "\n"


class AudioSFTCollator:
    """SFT batches: prompt + ``<answer>…</answer><|im_end|>``, loss only on the answer tokens, audio attached."""

    def __init__(self, processor: Any, audio_root: str | Path | None, max_length: int | None = None) -> None:
        self.processor = processor
        self.audio_root = audio_root
        self.max_length = max_length
        self.eos = processor.tokenizer.eos_token

    def __call__(self, rows: list[dict[str, Any]]) -> Any:
        records = [MCQRecord.from_dict(r) for r in rows]
        self.last_ids = [r.id for r in records]  # named when this batch's loss is not finite
        targets = [sft_target(r.answer, self.eos) for r in records]
        texts = [prompt_text(self.processor, r.question, r.choices) + t for r, t in zip(records, targets, strict=True)]
        batch = encode_prompts(self.processor, texts, [load_waveform(r, self.audio_root) for r in records])
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        if self.max_length is not None and max(lengths) > self.max_length:
            # Cutting would drop audio placeholders or the answer; the paper's 1024 fits 30 s of audio plus prompt.
            over = [r.id for r, n in zip(records, lengths, strict=True) if n > self.max_length]
            raise ValueError(f"records {over} exceed max_length {self.max_length} tokens (audio included)")
        labels = batch["input_ids"].clone()
        labels[:] = -100
        for i, target in enumerate(targets):
            n = len(self.processor.tokenizer(target, add_special_tokens=False)["input_ids"])
            labels[i, -n:] = batch["input_ids"][i, -n:]
        batch["labels"] = labels
        return batch


def generate_batch(
    model: Any,
    processor: Any,
    items: Sequence[tuple[str, Sequence[str], np.ndarray]],
    max_new_tokens: int = 16,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    n: int = 1,
) -> list[str]:
    """Completions for ``(question, choices, 16 kHz waveform)`` items in one left-padded batch: greedy by default,
    else ``n`` samples per item (item-major). Decoded with special tokens removed."""
    import torch

    model.eval()
    texts = [prompt_text(processor, q, c) for q, c, _ in items]
    batch = encode_prompts(processor, texts, [w for _, _, w in items]).to(model.device)
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0}
    if temperature > 0:
        kwargs.update(temperature=temperature, top_k=top_k, num_return_sequences=n)
    with torch.inference_mode():
        ids = model.generate(**batch, **kwargs)
    return processor.tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
