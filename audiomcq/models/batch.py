"""Turning MCQ records into model batches, for training and for answering, with the audio (or silence) attached.

One code path renders every prompt (``audiomcq.prompts`` through the processor's chat template) and attaches the
waveform, so SFT, filtering, evaluation and serving feed a model identically. ``AudioSFTCollator`` exists because
trl's collators drop audio: with them SFT trains audio-blind (ml-stack §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiomcq.data.record import MCQRecord
from audiomcq.prompts import build_messages, solution
from audiomcq.synth.audio import SR, read_wav


@dataclass(frozen=True)
class AudioMode:
    """What the model hears: the record's audio, or silence of ``seconds`` (None: as long as the clip)."""

    kind: str = "audio"
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> AudioMode:
        """``audio``, ``silence`` (as long as the clip) or ``silence:30`` (30 s)."""
        kind, _, secs = text.partition(":")
        if kind not in ("audio", "silence"):
            raise ValueError(f"audio mode must be 'audio' or 'silence[:SECONDS]', not {text!r}")
        return cls(kind, float(secs) if secs else None)


def load_waveform(record: MCQRecord, audio_root: str | Path | None, mode: AudioMode = AudioMode()) -> np.ndarray:
    """The 16 kHz waveform the model should hear for ``record`` under ``mode``."""
    if mode.kind == "silence" and mode.seconds is not None:
        return np.zeros(int(mode.seconds * SR), dtype=np.float32)
    path = Path(record.audio_path or "")
    if audio_root is not None and not path.is_absolute():
        path = Path(audio_root) / path
    wave = read_wav(path)
    return np.zeros_like(wave) if mode.kind == "silence" else wave


def prompt_text(processor: Any, question: str, choices: Sequence[str]) -> str:
    """The chat-template text up to the assistant turn, with one audio placeholder."""
    return processor.apply_chat_template(build_messages(question, choices), add_generation_prompt=True, tokenize=False)


def encode_prompts(processor: Any, texts: list[str], waves: list[np.ndarray]) -> Any:
    """Left-padded token ids plus audio features for a batch of prompt texts."""
    return processor(text=texts, audio=waves, sampling_rate=SR, padding=True, padding_side="left", return_tensors="pt")


class AudioSFTCollator:
    """SFT batches: prompt + ``<answer>…</answer><|im_end|>``, loss only on the answer tokens, audio attached."""

    def __init__(self, processor: Any, audio_root: str | Path | None) -> None:
        self.processor = processor
        self.audio_root = audio_root
        self.eos = processor.tokenizer.eos_token

    def __call__(self, rows: list[dict[str, Any]]) -> Any:
        records = [MCQRecord.from_dict(r) for r in rows]
        targets = [solution(r.answer) + self.eos + "\n" for r in records]
        texts = [prompt_text(self.processor, r.question, r.choices) + t for r, t in zip(records, targets, strict=True)]
        batch = encode_prompts(self.processor, texts, [load_waveform(r, self.audio_root) for r in records])
        labels = batch["input_ids"].clone()
        labels[:] = -100
        for i, target in enumerate(targets):
            n = len(self.processor.tokenizer(target, add_special_tokens=False)["input_ids"])
            labels[i, -n:] = batch["input_ids"][i, -n:]
        batch["labels"] = labels
        return batch


def generate_answers(
    model: Any,
    processor: Any,
    records: Sequence[MCQRecord],
    audio_root: str | Path | None,
    mode: AudioMode = AudioMode(),
    batch_size: int = 64,
    max_new_tokens: int = 16,
) -> list[str]:
    """Greedy completions (decoded, special tokens removed) for each record under ``mode``."""
    outputs: list[str] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        items = [(r.question, r.choices, load_waveform(r, audio_root, mode)) for r in chunk]
        outputs.extend(generate_batch(model, processor, items, max_new_tokens))
    return outputs


def generate_batch(
    model: Any, processor: Any, items: Sequence[tuple[str, Sequence[str], np.ndarray]], max_new_tokens: int = 16
) -> list[str]:
    """Greedy completions for ``(question, choices, 16 kHz waveform)`` items, in one batch."""
    import torch

    model.eval()
    texts = [prompt_text(processor, q, c) for q, c, _ in items]
    batch = encode_prompts(processor, texts, [w for _, _, w in items]).to(model.device)
    with torch.inference_mode():
        ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
