"""GPU-only checks (``make test-gpu``); never collected by CI's ``-m "not gpu"``."""

import numpy as np
import pytest

from audiomcq.data.io import read_records
from audiomcq.inference import EngineSpec, Request, Sampling, make_engine
from audiomcq.synth.audio import SR

pytestmark = pytest.mark.gpu


def test_vllm_backend_answers_like_transformers_on_a_tiny_model(tiny_omni, synth_corpus):
    torch = pytest.importorskip("torch")
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    silence = np.zeros(2 * SR, np.float32)
    reqs = [Request(r.question, tuple(r.choices), silence) for r in read_records(synth_corpus / "eval.jsonl")]
    hf = make_engine(EngineSpec(str(tiny_omni), dtype="float32")).generate(reqs, Sampling(max_new_tokens=8))
    vllm = make_engine(EngineSpec(str(tiny_omni), backend="vllm", dtype="float32")).generate(reqs, Sampling(8))
    agree = sum(a == b for a, b in zip(hf, vllm, strict=True)) / len(reqs)
    assert agree >= 0.9, (hf[:3], vllm[:3])  # greedy on the same weights; kernels may differ on near-ties


def test_grpo_rolls_out_through_vllm_with_the_audio(tiny_omni, synth_corpus, tmp_path):
    """Colocated vLLM rollouts: the policy is exported, audio rides along with each prompt, the synced weights
    load under their vLLM names, and two GRPO steps complete."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from audiomcq.train.grpo import build_grpo_trainer
    from audiomcq.train.vllm_rollout import AudioPromptLLM

    trainer, _ = build_grpo_trainer(
        tiny_omni,
        synth_corpus / "train.jsonl",
        synth_corpus,
        tmp_path,
        steps=2,
        prompts_per_step=2,
        num_generations=2,
        max_completion_length=4,
        trainer_args={"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.2},
    )
    assert isinstance(trainer.vllm_generation.llm, AudioPromptLLM)
    trainer.train()
    assert trainer.state.global_step == 2 and len(trainer._rollout_audio) == 4
    assert all(item is not None for item in trainer._rollout_audio)
