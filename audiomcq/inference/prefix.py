"""Shared-prefix generation: when every request hears the same waveform (the filter's silence), the audio
encoder and the prompt prefix up to the end of the audio block run once, and every question reuses their KV cache.

The prompt puts the audio block first in the user turn (``audiomcq.prompts``), so the system turn and the audio
form a prefix common to every question without changing what the model sees. Questions are grouped by token
length so no row needs padding: positions then run on from the prefix exactly as in a one-pass forward (the
equality with the uncached path is tested).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from audiomcq.errors import AudioMCQError
from audiomcq.synth.audio import SR

AUDIO_END = "<|audio_eos|>"


class SharedPrefix:
    """The KV cache of ``system + user audio block`` for one waveform, and generation that continues from it."""

    def __init__(self, model: Any, processor: Any, wave: np.ndarray) -> None:
        import torch

        from audiomcq.models.batch import prompt_text

        self.model, self.processor = model, processor
        probe = prompt_text(processor, "?", ["a", "b"])
        if AUDIO_END not in probe:
            raise AudioMCQError(f"the chat template has no {AUDIO_END} marker; shared-prefix generation needs it")
        self.text = probe[: probe.index(AUDIO_END) + len(AUDIO_END)]
        enc = processor(text=[self.text], audio=[wave], sampling_rate=SR, return_tensors="pt").to(model.device)
        model.eval()
        with torch.inference_mode():
            out = model(**enc, use_cache=True)
        self.cache = getattr(out, "cache", None) or out.past_key_values
        self.ids = enc["input_ids"]

    def generate(self, prompts: Sequence[str], max_new_tokens: int, **sample: Any) -> list[list[str]]:
        """Completions for full prompt texts that all start with the shared prefix (``n`` per prompt)."""
        import torch

        tok = self.processor.tokenizer
        groups: dict[int, list[int]] = defaultdict(list)
        suffixes = []
        for i, text in enumerate(prompts):
            if not text.startswith(self.text):
                raise AudioMCQError(f"prompt {i} does not start with the shared audio prefix")
            suffixes.append(tok(text[len(self.text) :], add_special_tokens=False, return_tensors="pt")["input_ids"][0])
            groups[len(suffixes[-1])].append(i)
        n = sample.pop("num_return_sequences", 1)
        out: list[list[str]] = [[] for _ in prompts]
        for rows in groups.values():
            # n samples per prompt as n rows each, so the cache is expanded once, here, and generate never has to.
            suffix = torch.stack([suffixes[i] for i in rows]).repeat_interleave(n, dim=0).to(self.ids.device)
            ids = torch.cat([self.ids.expand(len(suffix), -1), suffix], dim=1)
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(len(suffix))
            if hasattr(self.model, "model") and hasattr(self.model.model, "rope_deltas"):
                # Omni's thinker offsets text positions by rope_deltas once a cache exists; audio-only prompts have
                # sequential positions, so the offset is 0 (generate would otherwise recompute it from the audio).
                self.model.model.rope_deltas = torch.zeros(len(suffix), 1, dtype=torch.long, device=ids.device)
            with torch.inference_mode():
                gen = self.model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), cache=cache, max_new_tokens=max_new_tokens,
                    **sample,
                )  # fmt: skip
            texts = tok.batch_decode(gen[:, ids.shape[1] :], skip_special_tokens=True)
            for k, i in enumerate(rows):
                out[i] = texts[k * n : (k + 1) * n]
        return out
