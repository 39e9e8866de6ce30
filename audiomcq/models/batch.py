"""Turning MCQ records into model batches, for training and for answering, with the audio (or silence) attached.

One code path renders every prompt (``audiomcq.prompts`` through the processor's chat template) and attaches the
waveform, so SFT, filtering, evaluation and serving feed a model identically. ``AudioSFTCollator`` exists because
trl's collators drop audio: with them SFT trains audio-blind.
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


def prompt_text(processor: Any, question: str, choices: Sequence[str], fmt: Any = None) -> str:
    """The chat-template text up to the assistant turn, with one audio placeholder; ``fmt`` (a ``PromptFormat``)
    asks the model its own way, None the AudioMCQ way."""
    messages = build_messages(question, choices) if fmt is None else fmt.messages(question, choices)
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def prompt_tokens(processor: Any, question: str, choices: Sequence[str], seconds: float, fmt: Any = None) -> int:
    """Tokens of one question's prompt once ``processor`` has expanded its audio placeholder for a clip of
    ``seconds`` at 16 kHz: what a model's context must hold before it generates a single token."""
    from audiomcq.models.lengths import text_tokens

    return text_tokens(processor, prompt_text(processor, question, choices, fmt), round(seconds * SR))


def encode_prompts(processor: Any, texts: list[str], waves: list[np.ndarray]) -> Any:
    """Left-padded token ids plus audio features for a batch of prompt texts."""
    return processor(text=texts, audio=waves, sampling_rate=SR, padding=True, padding_side="left", return_tensors="pt")


def sft_target(answer: str, eos: str, reasoning: str | None = None) -> str:
    """The SFT label text after the prompt: ``<answer>…</answer>``, the end-of-turn token and its newline; with
    ``reasoning`` (a record's CoT text), that text and a newline first."""
    return (f"{reasoning}\n" if reasoning else "") + solution(answer) + eos + "\n"


COT_FIELDS = ("simple_cot", "structured_cot")


def record_target(record: MCQRecord, eos: str, cot: str | None = None) -> str:
    """``record``'s SFT label text; ``cot`` names the CoT field (``COT_FIELDS``) whose text, when the record has
    one, precedes the answer (None: answer only, as in all the paper's runs)."""
    return sft_target(record.answer, eos, getattr(record, cot) if cot else None)


class AudioSFTCollator:
    """SFT batches: prompt + ``<answer>…</answer><|im_end|>``, loss only on the answer tokens, audio attached.

    ``packing`` lays the batch out as one padding-free row (``audiomcq.train.packing``); ``cot`` trains each record's
    CoT text before its answer (``record_target``)."""

    def __init__(
        self,
        processor: Any,
        audio_root: str | Path | None,
        max_length: int | None = None,
        packing: bool = False,
        cot: str | None = None,
    ) -> None:
        self.processor = processor
        self.audio_root = audio_root
        self.max_length = max_length
        self.eos = processor.tokenizer.eos_token
        self.packing = packing
        self.cot = cot

    def __call__(self, rows: list[dict[str, Any]]) -> Any:
        records = [MCQRecord.from_dict(r) for r in rows]
        self.last_ids = [r.id for r in records]  # named when this batch's loss is not finite
        targets = [record_target(r, self.eos, self.cot) for r in records]
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
        if self.packing:
            from audiomcq.train.packing import pack_batch

            return pack_batch(batch)
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
    stop: Sequence[str] = (),
    fmt: Any = None,
) -> list[Any]:
    """Completions for ``(question, choices, 16 kHz waveform)`` items in one left-padded batch: greedy by default,
    else ``n`` samples per item (item-major). Decoded with special tokens removed; each one a ``Completion`` that
    says whether it hit ``max_new_tokens`` before an end token or a ``stop`` string (which ends a row and is kept)."""
    import torch

    model.eval()
    texts = [prompt_text(processor, q, c, fmt) for q, c, _ in items]
    batch = encode_prompts(processor, texts, [w for _, _, w in items]).to(model.device)
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0}
    if temperature > 0:
        kwargs.update(temperature=temperature, top_k=top_k, num_return_sequences=n)
    if stop:
        kwargs.update(stop_strings=list(stop), tokenizer=processor.tokenizer)
    with torch.inference_mode():
        ids = model.generate(**batch, **kwargs)
    new = ids[:, batch["input_ids"].shape[1] :]
    return completions(processor.tokenizer, new, max_new_tokens, end_ids(model), stop)


def end_ids(model: Any) -> set[int]:
    """The token ids that end generation for ``model`` (its generation config's end-of-sequence ids)."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    return set() if eos is None else {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


def completions(tokenizer: Any, generated: Any, max_new_tokens: int, eos: set[int], stop: Sequence[str]) -> list[Any]:
    """Decoded rows of new tokens, each marked truncated when it ran the whole budget without an end token or a stop
    string: a row that stopped early was padded, so only a full-width batch can hold a truncated row."""
    from audiomcq.inference.base import Completion

    texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
    full = generated.shape[1] >= max_new_tokens
    out = []
    for row, text in zip(generated.tolist(), texts, strict=True):
        ended = any(t in eos for t in row) or any(s in text for s in stop)
        out.append(Completion(text, truncated=full and not ended))
    return out
