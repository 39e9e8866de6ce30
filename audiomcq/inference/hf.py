"""The transformers backend: real batches (left padding) through ``model.generate`` on CPU or GPU."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from audiomcq.inference.base import EngineSpec, Request, Sampling


class TransformersEngine:
    """Loads the checkpoint once; each ``generate`` call runs ``spec.batch_size`` requests per forward batch."""

    def __init__(self, spec: EngineSpec) -> None:
        import torch

        from audiomcq.models import load_model

        self.spec = spec
        dtype = None if spec.dtype == "auto" else getattr(torch, spec.dtype)
        self.loaded = load_model(spec.path, family=spec.family, dtype=dtype)
        self._prefix: Any = None
        self._prefix_key: tuple[int, int] | None = None

    def generate(self, requests: Sequence[Request], sampling: Sampling | None = None) -> list[list[str]]:
        import torch

        from audiomcq.models.batch import generate_batch

        sampling = sampling or Sampling()
        torch.manual_seed(sampling.seed)
        n = sampling.n
        if self.spec.shared_prefix and len(requests) > 1 and _one_waveform(requests):
            return self._shared(requests, sampling)
        out: list[list[str]] = []
        for start in range(0, len(requests), self.spec.batch_size):
            chunk = requests[start : start + self.spec.batch_size]
            flat = generate_batch(
                self.loaded.model,
                self.loaded.processor,
                [(r.question, r.choices, r.audio) for r in chunk],
                sampling.max_new_tokens,
                temperature=sampling.temperature,
                top_k=sampling.top_k,
                n=n,
            )
            out.extend(flat[i * n : (i + 1) * n] for i in range(len(chunk)))
        return out

    def _shared(self, requests: Sequence[Request], sampling: Sampling) -> list[list[str]]:
        from audiomcq.inference.prefix import SharedPrefix
        from audiomcq.models.batch import prompt_text

        wave = requests[0].audio
        key = (len(wave), hash(wave.tobytes()))
        if self._prefix_key != key:
            self._prefix, self._prefix_key = SharedPrefix(self.loaded.model, self.loaded.processor, wave), key
        kwargs: dict = {"do_sample": sampling.temperature > 0}
        if sampling.temperature > 0:
            kwargs.update(temperature=sampling.temperature, top_k=sampling.top_k, num_return_sequences=sampling.n)
        out: list[list[str]] = []
        for start in range(0, len(requests), self.spec.batch_size):
            chunk = requests[start : start + self.spec.batch_size]
            texts = [prompt_text(self.loaded.processor, r.question, r.choices) for r in chunk]
            out.extend(self._prefix.generate(texts, sampling.max_new_tokens, **kwargs))
        return out


def _one_waveform(requests: Sequence[Request]) -> bool:
    """Whether every request carries the same waveform (by identity, or equal samples)."""
    first = requests[0].audio
    return all(r.audio is first or (r.audio.shape == first.shape and np.array_equal(r.audio, first)) for r in requests)
