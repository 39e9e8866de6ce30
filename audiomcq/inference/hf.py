"""The transformers backend: real batches (left padding) through ``model.generate`` on CPU or GPU.

Completions end at an end token, at ``sampling.stop`` (``</answer>`` for filtering and evaluation) or at the budget,
and say which (``Completion.truncated``). The engine also counts tokens with the checkpoint's own tokenizer, so the
budget and the context check that filtering and evaluation make are exact for this model."""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from audiomcq.audio import SR
from audiomcq.inference.base import EngineSpec, Request, Sampling

PREFIX_CACHE = 8  # distinct shared waveforms (e.g. silences of a few lengths) whose prefix caches are kept


class TransformersEngine:
    """Loads the checkpoint once; each ``generate`` call runs ``spec.batch_size`` requests per forward batch.

    With ``spec.shared_prefix``, requests that carry the very same waveform (the filter's silence) are answered
    from one encoded prefix (``SharedPrefix``); the rest go through ordinary padded batches. A prompt format that
    puts the audio after the question has no prefix common to every question, so it always takes the batches."""

    def __init__(self, spec: EngineSpec) -> None:
        from audiomcq.models import load_model

        self.spec = spec
        self.format = spec.format
        self.loaded = load_model(spec.path, family=spec.family, dtype=spec.dtype)
        self._prefixes: OrderedDict[tuple, Any] = OrderedDict()
        text_config = self.loaded.model.config.get_text_config()
        self.max_length: int | None = spec.max_length or getattr(text_config, "max_position_embeddings", None)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text in this model's tokenizer (no special tokens added)."""
        encoded = self.loaded.processor.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def prompt_tokens(self, request: Request) -> int:
        """Tokens the model reads for ``request``, its audio expanded as the processor expands it."""
        from audiomcq.models.batch import prompt_tokens

        seconds = len(request.audio) / SR
        return prompt_tokens(self.loaded.processor, request.question, request.choices, seconds, self.format)

    def generate(self, requests: Sequence[Request], sampling: Sampling | None = None) -> list[list[str]]:
        import torch

        sampling = sampling or Sampling()
        torch.manual_seed(sampling.seed)
        groups: dict[tuple, list[int]] = defaultdict(list)
        keys: dict[int, tuple] = {}  # one key per array object: probes hand every question the same silence
        shared = self.spec.shared_prefix and self.format.audio_first
        if shared:
            arrays = {id(r.audio): r.audio for r in requests}
            shapes = Counter(a.shape for a in arrays.values())
            # Only arrays that share a shape with another can be equal: hash those, key the rest by identity.
            keys = {k: _wave_key(a) if shapes[a.shape] > 1 else ("unique", k) for k, a in arrays.items()}
        for i, r in enumerate(requests):
            groups[keys[id(r.audio)] if shared else (i,)].append(i)
        out: list[list[str]] = [[] for _ in requests]
        singles = [idx[0] for idx in groups.values() if len(idx) == 1]
        for key, idx in groups.items():
            if len(idx) > 1:
                for i, answer in zip(idx, self._shared(key, [requests[i] for i in idx], sampling), strict=True):
                    out[i] = answer
        for i, answer in zip(singles, self._batched([requests[i] for i in singles], sampling), strict=True):
            out[i] = answer
        return out

    def _batched(self, requests: Sequence[Request], sampling: Sampling) -> list[list[str]]:
        from audiomcq.models.batch import generate_batch

        n, out = sampling.n, []
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
                stop=sampling.stop,
                fmt=self.format,
            )
            out.extend(flat[i * n : (i + 1) * n] for i in range(len(chunk)))
        return out

    def _shared(self, key: tuple, requests: Sequence[Request], sampling: Sampling) -> list[list[str]]:
        from audiomcq.inference.prefix import SharedPrefix
        from audiomcq.models.batch import prompt_text

        if key not in self._prefixes:
            loaded = self.loaded
            self._prefixes[key] = SharedPrefix(loaded.model, loaded.processor, requests[0].audio, self.format)
            while len(self._prefixes) > PREFIX_CACHE:
                self._prefixes.popitem(last=False)
        prefix = self._prefixes[key]
        self._prefixes.move_to_end(key)
        kwargs: dict = {"do_sample": sampling.temperature > 0}
        if sampling.temperature > 0:
            kwargs.update(temperature=sampling.temperature, top_k=sampling.top_k, num_return_sequences=sampling.n)
        out: list[list[str]] = []
        for start in range(0, len(requests), self.spec.batch_size):
            chunk = requests[start : start + self.spec.batch_size]
            texts = [prompt_text(self.loaded.processor, r.question, r.choices, self.format) for r in chunk]
            out.extend(prefix.generate(texts, sampling.max_new_tokens, sampling.stop, **kwargs))
        return out


def _wave_key(wave: np.ndarray) -> tuple:
    """Identifies a waveform by its samples (equal silences share a key; distinct clips never collide in practice)."""
    return (wave.shape, hashlib.blake2b(np.ascontiguousarray(wave).tobytes(), digest_size=16).digest())
