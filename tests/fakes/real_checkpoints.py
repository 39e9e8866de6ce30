"""Random-weight checkpoints laid out exactly like the hub's Qwen2.5-Omni-7B and Qwen2-Audio-7B-Instruct.

Every metadata file is the hub's own (from ``../shared/checkpoints``): tokenizer, chat template, processor and
generation configs are copied byte for byte, and ``config.json`` is the hub's JSON with only the sizes shrunk
(widths, depths, heads, rope sections made consistent); token ids, vocabulary sizes, architecture names and dtypes
stay as published. Qwen2.5-Omni is the full model (thinker + talker + token2wav) under ``Qwen2_5OmniModel``, as the
hub has it; weights are written as sharded safetensors with an index, under the hub's tensor names.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

SHARED_CHECKPOINTS = Path(__file__).resolve().parents[3] / "shared" / "checkpoints"
OMNI, QWEN2_AUDIO = "Qwen2.5-Omni-7B", "Qwen2-Audio-7B-Instruct"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")

# Shrunk sizes: text width 64 (4 heads of 16, 2 KV heads), audio encoder width 32.
TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_window_layers": 2,
}
AUDIO = {"d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 64}
MROPE = [2, 3, 3]  # sums to half the head dim (16 / 2), as [16, 24, 24] does for 128


def _omni_config(config: dict[str, Any]) -> dict[str, Any]:
    thinker = config["thinker_config"]
    thinker["text_config"].update(TEXT)
    thinker["text_config"]["rope_scaling"]["mrope_section"] = MROPE
    thinker["audio_config"].update(AUDIO, num_hidden_layers=2, output_dim=TEXT["hidden_size"])
    thinker["vision_config"].update(
        depth=1,
        embed_dim=32,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=TEXT["hidden_size"],
        fullatt_block_indexes=[0],
    )
    config["talker_config"].update(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_window_layers=1,
        embedding_size=TEXT["hidden_size"],
    )
    config["talker_config"]["rope_scaling"]["mrope_section"] = MROPE
    t2w = config["token2wav_config"]
    t2w["dit_config"].update(
        dim=32,
        depth=1,
        heads=2,
        head_dim=16,
        emb_dim=16,
        enc_emb_dim=16,
        enc_lin_neurons=16,
        enc_channels=[16, 16, 16, 16, 48],
        enc_attention_channels=8,
        enc_se_channels=8,
    )
    t2w["bigvgan_config"].update(upsample_initial_channel=32)
    return config


def _qwen2_audio_config(config: dict[str, Any]) -> dict[str, Any]:
    config["text_config"].update(TEXT)
    config["audio_config"].update(AUDIO)
    return config


def hub_key_patterns(names: Any) -> set[str]:
    """Tensor names with layer numbers folded, to compare a layout with the hub's index whatever the depth."""
    return {re.sub(r"\.\d+\.", ".N.", name) for name in names}


def build(name: str, out: Path, seed: int = 0) -> Path:
    """Write the random checkpoint ``name`` (OMNI or QWEN2_AUDIO) to ``out`` and return it."""
    import torch
    from transformers import AutoConfig, Qwen2_5OmniForConditionalGeneration, Qwen2AudioForConditionalGeneration

    src = SHARED_CHECKPOINTS / name
    assert src.is_dir(), f"{src} is missing: tests need ../shared beside the repository"
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name not in (*WEIGHTS, "config.json", "README.md", "LICENSE"):
            shutil.copyfile(f, out / f.name)
    config = json.loads((src / "config.json").read_text())
    config = _omni_config(config) if name == OMNI else _qwen2_audio_config(config)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    torch.manual_seed(seed)
    cls = Qwen2_5OmniForConditionalGeneration if name == OMNI else Qwen2AudioForConditionalGeneration
    model = cls(AutoConfig.from_pretrained(out)).to(torch.bfloat16)
    scratch = out / ".save"
    # Omni is written in shards (as the hub has it); Qwen2-Audio in one file with no index, the other valid layout.
    model.save_pretrained(scratch, max_shard_size="40MB" if name == OMNI else "2GB")
    for f in scratch.glob("model*.safetensors*"):
        f.rename(out / f.name)
    shutil.rmtree(scratch)
    return out
