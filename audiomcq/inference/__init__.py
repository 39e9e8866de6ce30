"""One inference interface for filtering, evaluation, serving and data generation.

An engine answers :class:`Request` s (a question, its choices, and the 16 kHz waveform the model should hear) with
``n`` completions each. Backends: ``transformers`` (CPU/GPU, batched, left padding), ``vllm`` (GPU images only) and
``openai`` (an OpenAI-compatible chat endpoint elsewhere, e.g. a vLLM or KServe server). Every backend renders the
question with :mod:`audiomcq.prompts`, so a model is asked exactly what it was trained on.
"""

from audiomcq.inference.base import Engine, EngineSpec, Request, Sampling, make_engine

__all__ = ["Engine", "EngineSpec", "Request", "Sampling", "make_engine"]
