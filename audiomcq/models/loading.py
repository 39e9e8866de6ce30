"""Load a Qwen2.5-Omni (thinker) or Qwen2-Audio model and its processor: the one place that decides a checkpoint's
family, model class and dtype for every stage (training, filtering, evaluation, serving, export).

Checkpoints come as the hub lays them out (Omni as the full thinker + talker + token2wav model, whose
``architectures`` name is not a transformers class) or as this project saves them (the Omni thinker alone).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)
# config.json model_type -> family
MODEL_TYPES = {
    "qwen2_5_omni_thinker": "qwen2_5_omni",
    "qwen2_5_omni": "qwen2_5_omni",
    "qwen2_audio": "qwen2_audio",
}
DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass
class LoadedModel:
    """A model, its processor and its family name."""

    model: Any
    processor: Any
    family: str
    path: str


def _config(path: str | Path) -> dict[str, Any]:
    config = Path(path) / "config.json"
    if not config.is_file():
        raise AudioMCQError(f"{path}: not a model directory (no config.json)")
    try:
        return json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AudioMCQError(f"{config}: unreadable ({err})") from None


def detect_family(path: str | Path) -> str:
    """The family of a local checkpoint, from ``config.json``'s ``model_type``."""
    model_type = _config(path).get("model_type")
    if model_type not in MODEL_TYPES:
        raise AudioMCQError(f"{path}: unsupported model_type {model_type!r}; supported: {', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[model_type]


def model_class(family: str) -> Any:
    """The transformers class that answers in text: the Omni thinker (a full Omni checkpoint loads only its
    thinker) or Qwen2-Audio's conditional-generation model."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration, Qwen2AudioForConditionalGeneration

    classes = {
        "qwen2_5_omni": Qwen2_5OmniThinkerForConditionalGeneration,
        "qwen2_audio": Qwen2AudioForConditionalGeneration,
    }
    if family not in classes:
        raise AudioMCQError(f"unknown model family {family!r}; known: {', '.join(classes)}")
    return classes[family]


def checkpoint_dtype(path: str | Path) -> str | None:
    """The dtype the checkpoint was published in: the top-level ``torch_dtype``/``dtype``, else the text model's
    (Qwen2-Audio's hub config states it only there), else the Omni thinker's."""
    config = _config(path)
    for part in (config, config.get("text_config") or {}, config.get("thinker_config") or {}):
        value = part.get("dtype") or part.get("torch_dtype")
        if isinstance(value, str):
            return value
    return None


@functools.cache
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 matmuls (AVX512-BF16 or AMX); elsewhere bf16 is emulated and very slow."""
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check and check())


def resolve_dtype(path: str | Path | None, requested: Any = None, device: str = "cpu") -> Any:
    """The torch dtype to load with. ``auto``/None: the checkpoint's own (bf16 for the real Qwen checkpoints),
    float32 when it states none. bf16 on a CPU without bf16 support falls back to float32, said once in the log."""
    import torch

    if isinstance(requested, torch.dtype):
        dtype = requested
    else:
        name = requested or "auto"
        if name not in DTYPES:
            raise AudioMCQError(f"dtype must be one of {', '.join(DTYPES)}, not {name!r}")
        if name == "auto":
            name = (checkpoint_dtype(path) if path is not None else None) or "float32"
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype) or name not in DTYPES:
            raise AudioMCQError(f"{path}: unsupported checkpoint dtype {name!r}")
    if dtype == torch.bfloat16 and device == "cpu" and not cpu_supports_bf16():
        _warn_bf16_fallback()
        return torch.float32
    return dtype


@functools.cache
def _warn_bf16_fallback() -> None:
    log.warning("this CPU has no native bf16 support: loading in float32 instead")


def load_model(
    path: str | Path,
    family: str | None = None,
    dtype: Any = None,
    device: str | None = None,
    attn_implementation: str | dict[str, str] | None = None,
) -> LoadedModel:
    """Load model and processor. A local directory's family is detected; a hub id needs ``family``.

    ``dtype``: a torch dtype, one of ``DTYPES``, or None (= ``auto``, the checkpoint's own). ``attn_implementation``:
    transformers' name for every attention of the model, or a dict of them per sub-config (``text_config``,
    ``audio_config``); None: transformers' choice, sdpa where torch has it."""
    import torch
    from transformers import AutoProcessor

    from audiomcq.models.tiny import OmniAudioProcessor

    local = Path(path).is_dir()
    if family is None:
        if not local:
            raise AudioMCQError(f"{path}: not a local directory; pass the model family for a hub id")
        family = detect_family(path)
    target = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = resolve_dtype(path if local else None, dtype, "cuda" if target.startswith("cuda") else "cpu")
    attention = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = model_class(family).from_pretrained(str(path), dtype=torch_dtype, **attention)
    if family == "qwen2_5_omni":
        try:
            processor = AutoProcessor.from_pretrained(str(path))
            if not hasattr(processor, "feature_extractor"):
                raise TypeError("tokenizer only")
        except (ImportError, OSError, TypeError, ValueError):
            # The stock Omni processor needs torchvision; the audio-only one needs nothing more.
            processor = OmniAudioProcessor.from_pretrained(str(path))
    else:
        processor = AutoProcessor.from_pretrained(str(path))
    if device:
        model.to(device)
    return LoadedModel(model, processor, family, str(path))
