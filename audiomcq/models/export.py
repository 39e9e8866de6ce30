"""Export a trained Qwen2.5-Omni *thinker* directory in the full-model layout vLLM loads.

vLLM registers Qwen2.5-Omni only under the full model's architectures and reads ``thinker_config`` from the full
config; a thinker saved by transformers (``Qwen2_5OmniThinkerForConditionalGeneration``, keys ``audio_tower.*``,
``model.layers.*``, ``lm_head.*``, ``visual.*``) has no registry entry. The export writes a full
``Qwen2_5OmniConfig`` around the thinker's config (audio output off, so no talker weights are needed) and prefixes
every weight with ``thinker.``, which vLLM's own name mapper then strips. Weights are copied bit for bit.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)
FULL_ARCHITECTURE = "Qwen2_5OmniForConditionalGeneration"


def export_for_vllm(src: str | Path, dst: str | Path) -> Path:
    """Write ``dst`` from the thinker directory ``src``; a Qwen2-Audio or full Omni directory is copied as is."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig, Qwen2_5OmniConfig

    src, dst = Path(src), Path(dst)
    config = json.loads((src / "config.json").read_text())
    dst.mkdir(parents=True, exist_ok=True)
    if config.get("model_type") != "qwen2_5_omni_thinker":
        shutil.copytree(src, dst, dirs_exist_ok=True)
        return dst
    shards = sorted(src.glob("*.safetensors"))
    if not shards:
        raise AudioMCQError(f"{src}: no .safetensors weights to export")
    for shard in shards:
        tensors = load_file(str(shard))
        save_file({f"thinker.{k}": v for k, v in tensors.items()}, str(dst / shard.name), metadata={"format": "pt"})
    index = src / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
        data["weight_map"] = {f"thinker.{k}": v for k, v in data["weight_map"].items()}
        (dst / index.name).write_text(json.dumps(data, indent=2))
    thinker = AutoConfig.from_pretrained(str(src))
    full = Qwen2_5OmniConfig(thinker_config=thinker.to_dict(), enable_audio_output=False)
    full.architectures = [FULL_ARCHITECTURE]
    full.save_pretrained(str(dst))
    for extra in src.iterdir():  # processor, tokenizer, chat template, generation config
        if extra.is_file() and extra.suffix != ".safetensors" and extra.name not in ("config.json", index.name):
            shutil.copy2(extra, dst / extra.name)
    log.info("exported %s -> %s (full Qwen2.5-Omni layout for vLLM)", src, dst)
    return dst
