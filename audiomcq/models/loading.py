"""Load a Qwen2.5-Omni (thinker) or Qwen2-Audio model and its processor from a directory or a hub id."""

from __future__ import annotations

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


@dataclass
class LoadedModel:
    """A model, its processor and its family name."""

    model: Any
    processor: Any
    family: str
    path: str


def detect_family(path: str | Path) -> str:
    """The family of a local checkpoint, from ``config.json``'s ``model_type``."""
    config = Path(path) / "config.json"
    if not config.is_file():
        raise AudioMCQError(f"{path}: not a model directory (no config.json)")
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type not in MODEL_TYPES:
        raise AudioMCQError(f"{path}: unsupported model_type {model_type!r}; supported: {', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[model_type]


def load_model(
    path: str | Path, family: str | None = None, dtype: Any = None, device: str | None = None
) -> LoadedModel:
    """Load model and processor. A local directory's family is detected; a hub id needs ``family``.

    A full Qwen2.5-Omni checkpoint (thinker + talker) loads only its thinker, the part that answers in text.
    """
    import torch
    from transformers import (
        AutoProcessor,
        Qwen2_5OmniThinkerForConditionalGeneration,
        Qwen2AudioForConditionalGeneration,
    )

    from audiomcq.models.tiny import OmniAudioProcessor

    local = Path(path).is_dir()
    if family is None:
        if not local:
            raise AudioMCQError(f"{path}: not a local directory; pass the model family for a hub id")
        family = detect_family(path)
    kwargs = {"dtype": dtype or torch.float32}
    if family == "qwen2_5_omni":
        model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(str(path), **kwargs)
        try:
            processor = AutoProcessor.from_pretrained(str(path))
            if not hasattr(processor, "feature_extractor"):
                raise TypeError("tokenizer only")
        except (ImportError, OSError, TypeError, ValueError):
            # The stock Omni processor needs torchvision; the audio-only one needs nothing more.
            processor = OmniAudioProcessor.from_pretrained(str(path))
    elif family == "qwen2_audio":
        model = Qwen2AudioForConditionalGeneration.from_pretrained(str(path), **kwargs)
        processor = AutoProcessor.from_pretrained(str(path))
    else:
        raise AudioMCQError(f"unknown model family {family!r}")
    if device:
        model.to(device)
    return LoadedModel(model, processor, family, str(path))
