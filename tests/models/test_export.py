"""A trained Omni thinker is exported in the full-model layout vLLM registers, weights bit for bit."""

import json

from safetensors.torch import load_file

from audiomcq.models.export import FULL_ARCHITECTURE, export_for_vllm


def test_thinker_export_wraps_the_config_and_prefixes_every_weight(tiny_omni, tmp_path):
    out = export_for_vllm(tiny_omni, tmp_path / "vllm")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [FULL_ARCHITECTURE] and config["model_type"] == "qwen2_5_omni"
    assert config["enable_audio_output"] is False
    source = json.loads((tiny_omni / "config.json").read_text())
    assert config["thinker_config"]["text_config"]["hidden_size"] == source["text_config"]["hidden_size"]
    before, after = load_file(str(tiny_omni / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(after) == {f"thinker.{k}" for k in before}
    assert all(after[f"thinker.{k}"].equal(v) for k, v in before.items())
    assert {"lm_head.weight", "model.embed_tokens.weight"} <= set(before)  # vLLM's mapper expects these names
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()


def test_qwen2_audio_is_copied_as_is(tiny_qwen2_audio, tmp_path):
    out = export_for_vllm(tiny_qwen2_audio, tmp_path / "vllm")
    assert (out / "config.json").read_text() == (tiny_qwen2_audio / "config.json").read_text()
