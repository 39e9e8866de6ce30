"""The engine interface, its configuration, and the factory that picks a backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

import numpy as np

from audiomcq.errors import AudioMCQError

BACKENDS = ("transformers", "vllm", "openai")


@dataclass(frozen=True)
class Request:
    """One question for a model: the text, the choices in display order, and the 16 kHz mono waveform it hears."""

    question: str
    choices: tuple[str, ...]
    audio: np.ndarray = field(repr=False)


class Completion(str):
    """A completion's text that also says whether generation ran into its token budget before it stopped (at an
    end token or a stop string): a str, so every caller that only wants the text keeps working."""

    truncated: bool

    def __new__(cls, text: str, truncated: bool = False) -> Self:
        obj = super().__new__(cls, text)
        obj.truncated = truncated
        return obj


def is_truncated(output: str) -> bool:
    """Whether an engine's output hit its budget (plain strings, from engines that cannot tell, never did)."""
    return bool(getattr(output, "truncated", False))


@dataclass(frozen=True)
class Sampling:
    """Generation settings; ``temperature`` 0 means greedy (the default for filtering and evaluation).

    ``stop``: strings that end a completion, kept at its end (filtering and evaluation stop at ``</answer>``)."""

    max_new_tokens: int = 16
    temperature: float = 0.0
    top_k: int | None = None
    n: int = 1
    seed: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n > 1 and self.temperature == 0:
            raise ValueError("n > 1 samples need temperature > 0 (greedy decoding gives n identical answers)")


@dataclass(frozen=True)
class EngineSpec:
    """Which model, through which backend. Keys mirror the recipe's ``models`` entries.

    ``api_key_env`` names the environment variable holding the endpoint's key (from a Kubernetes Secret); the key
    itself never appears in a recipe, a log or an output.

    The prompt keys (``prompt``, ``system``, ``option``, ``option_sep``, ``stop``, ``audio_first``) ask a model of
    another family its own way (``audiomcq.inference.formats``); without them every model gets the AudioMCQ prompt.
    ``max_length``: the model's context in tokens (default: the checkpoint's max positions; endpoints: none).
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
    prompt: str | None = None
    system: str | None = None  # None: AudioMCQ's with the default prompt, none with a custom one; "": none
    option: str = "{letter}. {choice}"
    option_sep: str = "\n"
    stop: tuple[str, ...] | None = None
    audio_first: bool = True
    max_length: int | None = None

    def __post_init__(self) -> None:
        from audiomcq.inference.formats import PromptFormat

        length = self.max_length
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
            raise AudioMCQError(f"model {self.name or self.path}: max_length must be a positive number of tokens")
        PromptFormat.from_spec(self)  # a bad template is refused when the spec is made, not mid-run

    @property
    def format(self) -> Any:
        """The ``PromptFormat`` this spec asks with."""
        from audiomcq.inference.formats import PromptFormat

        return PromptFormat.from_spec(self)

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
        values = {k: str(v) if k == "path" else v for k, v in obj.items()}
        if "system" in values and values["system"] is None:
            values["system"] = ""  # an explicit null: no system turn
        if isinstance(values.get("stop"), str):
            values["stop"] = [values["stop"]]
        if values.get("stop") is not None:
            values["stop"] = tuple(values["stop"])
        if isinstance(values.get("max_length"), float) and values["max_length"].is_integer():
            values["max_length"] = int(values["max_length"])
        return cls(**values)


class Engine(Protocol):
    """Answers requests; ``generate`` returns ``sampling.n`` completions per request, in request order.

    The project's engines also expose ``format`` (their ``PromptFormat``), ``max_length`` (context in tokens or
    None), ``count_tokens(texts)`` and ``prompt_tokens(request)``; ``audiomcq.inference.budget`` falls back to safe
    defaults for engines that do not."""

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
