"""One inference interface for filtering, evaluation, serving and data generation.

An engine answers :class:`Request` s (a question, its choices, and the 16 kHz waveform the model should hear) with
``n`` completions each. Backends: ``transformers`` (CPU/GPU, batched, left padding), ``vllm`` (GPU images only) and
``openai`` (an OpenAI-compatible chat endpoint elsewhere, e.g. a vLLM or KServe server). Every backend renders the
question with the spec's prompt format (``audiomcq.inference.formats``): the AudioMCQ prompt of
:mod:`audiomcq.prompts` unless the model is configured with its own, so a model is asked the way it was trained.
Completions are :class:`Completion` strings that also say whether they hit the token budget; budgets and the context
check of filtering and evaluation live in ``audiomcq.inference.budget``.
"""

from audiomcq.inference.base import Completion, Engine, EngineSpec, Request, Sampling, is_truncated, make_engine

__all__ = ["Completion", "Engine", "EngineSpec", "Request", "Sampling", "is_truncated", "make_engine"]
