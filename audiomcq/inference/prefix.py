"""Shared-prefix generation: when every request hears the same waveform (the filter's silence), the audio
encoder and the prompt prefix up to the end of the audio block run once, and every question reuses their KV cache.

The prompt puts the audio block first in the user turn (``audiomcq.prompts``), so the system turn and the audio
form a prefix common to every question without changing what the model sees. Padding goes between the prefix and
each question, and positions follow the attention mask, so every question continues from the prefix exactly as in
a one-pass forward (the equality with the uncached path is tested for both families).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers.cache_utils import DynamicLayer  # this module is imported lazily, by the engine

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

    def _expanded(self, rows: int, spare: int) -> Any:
        """A fresh cache holding the prefix for ``rows`` rows with room for ``spare`` more tokens."""
        from transformers import DynamicCache

        cache = DynamicCache()
        cache.layers = [_GrowingLayer(layer.keys, layer.values, rows, spare) for layer in self.cache.layers]
        return cache

    def generate(
        self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = (), **sample: Any
    ) -> list[list[str]]:
        """Completions for full prompt texts that all start with the shared prefix (``n`` per prompt), each a
        ``Completion`` ended by an end token, a ``stop`` string or the budget (then marked truncated)."""
        import torch

        from audiomcq.models.batch import completions, end_ids

        tok = self.processor.tokenizer
        for i, text in enumerate(prompts):
            if not text.startswith(self.text):
                raise AudioMCQError(f"prompt {i} does not start with the shared audio prefix")
        n = sample.pop("num_return_sequences", 1)
        # The questions are left-padded *between* the prefix and themselves; generate derives positions from the
        # cumulative attention mask, so each question still starts right after the prefix, as in a one-pass forward.
        enc = tok([t[len(self.text) :] for t in prompts], add_special_tokens=False, padding=True,
                  padding_side="left", return_tensors="pt").to(self.ids.device)  # fmt: skip
        # n samples per prompt as n rows each, so the cache is expanded once, here, and generate never has to.
        suffix, mask = enc["input_ids"].repeat_interleave(n, 0), enc["attention_mask"].repeat_interleave(n, 0)
        rows = len(suffix)
        ids = torch.cat([self.ids.expand(rows, -1), suffix], dim=1)
        attention = torch.cat([torch.ones_like(self.ids).expand(rows, -1), mask], dim=1)
        cache = self._expanded(rows, suffix.shape[1] + max_new_tokens)
        if hasattr(self.model, "model") and hasattr(self.model.model, "rope_deltas"):
            # Omni's thinker offsets text positions by rope_deltas once a cache exists; audio-only prompts have
            # sequential positions, so the offset is 0 (generate would otherwise recompute it from the audio).
            self.model.model.rope_deltas = torch.zeros(rows, 1, dtype=torch.long, device=ids.device)
        if stop:
            sample.update(stop_strings=list(stop), tokenizer=tok)
        with torch.inference_mode():
            gen = self.model.generate(
                input_ids=ids, attention_mask=attention, cache=cache, max_new_tokens=max_new_tokens, **sample
            )
        texts = completions(tok, gen[:, ids.shape[1] :], max_new_tokens, end_ids(self.model), stop)
        return [texts[k * n : (k + 1) * n] for k in range(len(prompts))]


class _GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` that appends into preallocated room instead of re-concatenating the whole cache at every
    step: with a long shared prefix (750 silence tokens) the per-step copy, not the attention, dominated decoding."""

    def __init__(self, keys: Any, values: Any, rows: int, spare: int) -> None:
        super().__init__()
        _, h, n, d = keys.shape
        self._k = keys.new_empty(rows, h, n + spare, d)
        self._v = values.new_empty(rows, h, n + spare, d)
        self._k[:, :, :n] = keys.expand(rows, -1, -1, -1)
        self._v[:, :, :n] = values.expand(rows, -1, -1, -1)
        self._n = n
        self.device, self.is_initialized = keys.device, True
        self.keys, self.values = self._k[:, :, :n], self._v[:, :, :n]

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        end = self._n + key_states.shape[-2]
        if end > self._k.shape[-2]:  # more tokens than planned: fall back to concatenation
            return super().update(key_states, value_states, *args, **kwargs)
        self._k[:, :, self._n : end] = key_states
        self._v[:, :, self._n : end] = value_states
        self._n = end
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
        return self.keys, self.values
