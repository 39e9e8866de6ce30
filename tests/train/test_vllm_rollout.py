"""GRPO's vLLM rollouts, the parts that run without a GPU: weight names, audio per prompt, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import load_file

from audiomcq.errors import AudioMCQError
from audiomcq.models import load_model
from audiomcq.models.export import export_for_vllm
from audiomcq.prompts import build_messages
from audiomcq.synth.audio import SR, read_wav
from audiomcq.train.vllm_rollout import AudioPromptLLM, prompt_audio, vllm_name


@pytest.mark.parametrize("family", ["tiny_omni", "tiny_qwen2_audio"])
def test_synced_weight_names_are_exactly_the_files_vllm_loads(family, request, tmp_path):
    """Every in-memory parameter maps to a tensor of the exported (vLLM-loadable) checkpoint, with equal values,
    and together they cover it (tied or buffer-only keys aside)."""
    src = request.getfixturevalue(family)
    model = load_model(src).model
    exported = load_file(str(export_for_vllm(src, tmp_path / "vllm") / "model.safetensors"))
    model_type = model.config.model_type
    mapped = {vllm_name(name, model_type): p.detach() for name, p in model.named_parameters()}
    missing = set(mapped) - set(exported)
    assert not missing, sorted(missing)[:5]
    assert all(np.array_equal(mapped[k].numpy(), exported[k].numpy()) for k in mapped)
    assert len(mapped) >= 0.95 * len(exported)


def test_unknown_names_and_families_are_errors():
    with pytest.raises(AudioMCQError, match="no vLLM name"):
        vllm_name("something.else", "qwen2_audio")
    with pytest.raises(AudioMCQError, match="no vLLM weight-name mapping"):
        vllm_name("lm_head.weight", "llama")


def test_each_prompt_gets_its_own_waveform_in_order(synth_corpus):
    from audiomcq.data.io import read_records

    records = read_records(synth_corpus / "train.jsonl")[:3]
    prompts = [build_messages(r.question, r.choices, audio=str(synth_corpus / r.audio_path)) for r in records]
    prompts.append(build_messages("no audio here?", ["a", "b"]))
    audio = prompt_audio(prompts)
    for record, item in zip(records, audio, strict=False):
        assert item[1] == SR and np.array_equal(item[0], read_wav(synth_corpus / record.audio_path))
    assert audio[3] is None

    class Recorder:  # stands in for vllm.LLM, which only a GPU image installs; records what it was given
        tokenizer = "kept"

        def generate(self, rows, *args, **kwargs):
            self.rows = rows
            return "outputs"

    llm = Recorder()
    wrapped = AudioPromptLLM(llm, lambda: audio)
    rows = [{"prompt_token_ids": [i]} for i in range(4)]
    assert wrapped.generate(rows, sampling_params=None) == "outputs" and wrapped.tokenizer == "kept"
    assert [r["prompt_token_ids"] for r in llm.rows] == [[0], [1], [2], [3]]
    assert llm.rows[1]["multi_modal_data"]["audio"] is audio[1] and "multi_modal_data" not in llm.rows[3]
    with pytest.raises(AudioMCQError, match="out of step"):
        wrapped.generate(rows[:2])


def test_vllm_rollouts_are_refused_on_cpu_with_a_reason(tiny_omni, synth_corpus, tmp_path):
    import torch

    from audiomcq.train.grpo import build_grpo_trainer

    if torch.cuda.is_available():
        pytest.skip("a GPU machine may run vLLM")
    with pytest.raises(AudioMCQError, match=r"use_vllm.*need a CUDA GPU"):
        build_grpo_trainer(
            tiny_omni,
            synth_corpus / "train.jsonl",
            synth_corpus,
            tmp_path,
            trainer_args={"use_vllm": True, "vllm_mode": "colocate"},
        )
