"""``audiomcq bench train`` and ``bench eval``: MFU arithmetic, the 3B-class shape, real runs on the tiny model."""

from __future__ import annotations

import pytest

from audiomcq.bench_train import flop_parameters, sft_mfu


def test_the_3b_shape_has_qwen2_5_omni_3b_parameter_counts():
    """Built on the meta device (no memory): ~3.1B language-model matmul parameters, ~0.64B in the audio encoder."""
    import torch
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from audiomcq.models.tiny import OMNI_3B, build_config, build_tokenizer

    config = build_config("qwen2_5_omni", build_tokenizer(["a b c"], 300), OMNI_3B)
    with torch.device("meta"):
        model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    counts = flop_parameters(model)
    assert 2.9e9 < counts["text"] < 3.3e9, counts
    assert 0.6e9 < counts["audio"] < 0.7e9, counts


def test_mfu_is_model_flops_over_peak():
    # 1e9 text params x 1000 tokens + 1e8 audio params x 2 s x 50 positions/s, x6, over 1 s at 100 TFLOP/s.
    mfu = sft_mfu({"text": 10**9, "audio": 10**8}, 1000, 2.0, 1.0, 100.0)
    assert mfu == pytest.approx(6 * (1e12 + 1e10) / 1e14)


@pytest.mark.slow
def test_bench_train_prints_step_times_throughput_and_mfu(tmp_path, capsys):
    from audiomcq.cli import main

    assert main(["bench", "train", "--work", str(tmp_path), "--steps", "3", "--peak-tflops", "1"]) == 0
    out = capsys.readouterr().out
    assert "SFT  (batch 16)" in out and "MFU" in out and "rollout tokens/s" in out and "transformers rollouts" in out


@pytest.mark.slow
def test_bench_eval_compares_the_harness_with_a_per_sample_loop(tmp_path, capsys):
    from audiomcq.cli import main

    assert main(["bench", "eval", "--work", str(tmp_path), "--items", "16", "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    speedup = float(out.split("batched harness vs per-sample loop, both float32: ")[1].split()[0].rstrip("x"))
    assert "3 runs" in out and "FLOP-bound ceiling" in out  # a median of repetitions, beside its bound
    assert "both bfloat16" in out and "each in its fastest dtype" in out
    assert speedup > 1.5, out  # batching must pay even at 16 items (64 items: ~4.9x on 2 cores)
