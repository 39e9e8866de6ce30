"""Shared-prefix generation: when every request hears the same waveform (the filter's silence), the audio
encoder and the prompt prefix up to the end of the audio block run once, and every question reuses their KV cache.

The prompt puts the audio block first in the user turn (``audiomcq.prompts``), so the system turn and the audio
form a prefix common to every question without changing what the model sees. Padding goes between the prefix and
each question, and positions follow the attention mask, so every question continues from the prefix exactly as in
a one-pass forward (the equality with the uncached path is tested for both families).

The prefix's keys and values are kept once, not copied into every row: each layer attends to them with all rows'
queries in one product and merges that with the row's own tokens (``audiomcq.inference.cascade``), so a decoding
step reads the prefix once per batch, and memory grows with the questions, not with prefix x batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from audiomcq.errors import AudioMCQError
from audiomcq.synth.audio import SR

AUDIO_END = "<|audio_eos|>"


class SharedPrefix:
    """The KV cache of ``system + user audio block`` for one waveform, and generation that continues from it."""

    def __init__(self, model: Any, processor: Any, wave: np.ndarray, fmt: Any = None) -> None:
        import torch

        from audiomcq.models.batch import prompt_text

        self.model, self.processor = model, processor
        probe = prompt_text(processor, "?", ["a", "b"], fmt)
        if AUDIO_END not in probe:
            raise AudioMCQError(f"the chat template has no {AUDIO_END} marker; shared-prefix generation needs it")
        self.text = probe[: probe.index(AUDIO_END) + len(AUDIO_END)]
        enc = processor(text=[self.text], audio=[wave], sampling_rate=SR, return_tensors="pt").to(model.device)
        model.eval()
        with torch.inference_mode():
            out = model(**enc, use_cache=True)
        self.cache = getattr(out, "cache", None) or out.past_key_values
        self.ids = enc["input_ids"]

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = (), **sample: Any
    ) -> list[list[str]]:
        """Completions for full prompt texts that all start with the shared prefix (``n`` per prompt), each a
        ``Completion`` ended by an end token, a ``stop`` string or the budget (then marked truncated)."""
        from audiomcq.models.batch import completions, end_ids

        n = sample.get("num_return_sequences", 1)
        gen, start = self.run(prompts, max_new_tokens, stop, **sample)
        texts = completions(self.processor.tokenizer, gen[:, start:], max_new_tokens, end_ids(self.model), stop)
        return [texts[k * n : (k + 1) * n] for k in range(len(prompts))]

    def run(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = (), **sample: Any) -> tuple:
        """``model.generate``'s output for ``prompts`` (rows item-major, ``n`` per prompt) and the column where the
        new tokens start; ``sample`` goes to ``generate`` (e.g. ``output_logits``)."""
        import torch

        from audiomcq.inference.cascade import cascade, cascade_cache

        tok = self.processor.tokenizer
        for i, text in enumerate(prompts):
            if not text.startswith(self.text):
                raise AudioMCQError(f"prompt {i} does not start with the shared audio prefix")
        n = sample.pop("num_return_sequences", 1)
        # The questions are left-padded *between* the prefix and themselves; generate derives positions from the
        # cumulative attention mask, so each question still starts right after the prefix, as in a one-pass forward.
        enc = tok(
            [t[len(self.text) :] for t in prompts],
            add_special_tokens=False,
            padding=True,
            padding_side="left",
            return_tensors="pt",
        ).to(self.ids.device)
        # n samples per prompt as n rows each: the rows' own tokens are laid out once, here, and generate never
        # expands the cache (the prefix itself is never copied per row).
        suffix, mask = enc["input_ids"].repeat_interleave(n, 0), enc["attention_mask"].repeat_interleave(n, 0)
        rows = len(suffix)
        ids = torch.cat([self.ids.expand(rows, -1), suffix], dim=1)
        attention = torch.cat([torch.ones_like(self.ids).expand(rows, -1), mask], dim=1)
        cache = cascade_cache(self.cache, rows, suffix.shape[1] + max_new_tokens)
        if hasattr(self.model, "model") and hasattr(self.model.model, "rope_deltas"):
            # Omni's thinker offsets text positions by rope_deltas once a cache exists; audio-only prompts have
            # sequential positions, so the offset is 0 (generate would otherwise recompute it from the audio).
            self.model.model.rope_deltas = torch.zeros(rows, 1, dtype=torch.long, device=ids.device)
        if stop:
            sample.update(stop_strings=list(stop), tokenizer=tok)
        with torch.inference_mode(), cascade(self.model, cache):
            gen = self.model.generate(
                input_ids=ids, attention_mask=attention, cache=cache, max_new_tokens=max_new_tokens, **sample
            )
        return gen, ids.shape[1]
