"""The engine interface, its configuration, and the factory that picks a backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from audiomcq.errors import AudioMCQError

BACKENDS = ("transformers", "vllm", "openai")


@dataclass(frozen=True)
class Request:
    """One question for a model: the text, the choices in display order, and the 16 kHz mono waveform it hears."""

    question: str
    choices: tuple[str, ...]
    audio: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Sampling:
    """Generation settings; ``temperature`` 0 means greedy (the default for filtering and evaluation)."""

    max_new_tokens: int = 16
    temperature: float = 0.0
    top_k: int | None = None
    n: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n > 1 and self.temperature == 0:
            raise ValueError("n > 1 samples need temperature > 0 (greedy decoding gives n identical answers)")


@dataclass(frozen=True)
class EngineSpec:
    """Which model, through which backend. Keys mirror the recipe's ``models`` entries.

    ``api_key_env`` names the environment variable holding the endpoint's key (from a Kubernetes Secret); the key
    itself never appears in a recipe, a log or an output.
    """

    path: str
    backend: str = "transformers"
    name: str | None = None
    family: str | None = None
    dtype: str = "auto"
    batch_size: int = 64
    shared_prefix: bool = True  # transformers: encode a waveform shared by a whole call (silence) once
    base_url: str | None = None
    served_model: str | None = None
    api_key_env: str | None = None
    concurrency: int = 8
    retries: int = 3
    timeout: float = 120.0

    @classmethod
    def from_dict(cls, obj: dict[str, Any] | str) -> EngineSpec:
        """From a recipe entry (a mapping) or a bare model path."""
        if isinstance(obj, str):
            return cls(path=obj)
        unknown = set(obj) - set(cls.__dataclass_fields__)
        if unknown:
            raise AudioMCQError(
                f"unknown model setting(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        if obj.get("backend", "transformers") not in BACKENDS:
            raise AudioMCQError(f"backend must be one of {BACKENDS}, not {obj.get('backend')!r}")
        return cls(**{k: str(v) if k == "path" else v for k, v in obj.items()})


class Engine(Protocol):
    """Answers requests; ``generate`` returns ``sampling.n`` completions per request, in request order."""

    def generate(self, requests: Sequence[Request], sampling: Sampling | None = None) -> list[list[str]]: ...


def make_engine(spec: EngineSpec) -> Engine:
    """Build the backend ``spec`` names (heavy imports happen here, not at import time)."""
    if spec.backend == "transformers":
        from audiomcq.inference.hf import TransformersEngine

        return TransformersEngine(spec)
    if spec.backend == "openai":
        from audiomcq.inference.openai_http import OpenAIEngine

        return OpenAIEngine(spec)
    if spec.backend == "vllm":
        from audiomcq.inference.vllm_backend import VLLMEngine

        return VLLMEngine(spec)
    raise AudioMCQError(f"backend must be one of {BACKENDS}, not {spec.backend!r}")
