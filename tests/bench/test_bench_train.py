"""``audiomcq bench train`` and ``bench eval``: MFU arithmetic, the 3B-class shape, real runs on the tiny model."""

from __future__ import annotations

import pytest

from audiomcq.bench.train import flop_parameters, sft_mfu


def test_the_3b_shape_has_qwen2_5_omni_3b_parameter_counts():
    """Built on the meta device (no memory): ~3.1B language-model matmul parameters, ~0.64B in the audio encoder."""
    import torch
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from audiomcq.models.tiny import OMNI_3B, build_config, build_tokenizer

    config = build_config("qwen2_5_omni", build_tokenizer(["a b c"], 300), OMNI_3B)
    with torch.device("meta"):
        model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    counts = flop_parameters(model)
    assert 2.9e9 < counts["text"] + counts["head"] < 3.3e9, counts
    assert counts["head"] == 2048 * 151_936, counts  # the LM head, counted apart: it runs on labelled tokens only
    assert 0.6e9 < counts["audio"] < 0.7e9, counts


def test_mfu_is_model_flops_over_peak():
    # 1e9 text params x 1000 tokens + 1e8 audio params x 2 s x 50 positions/s, x6, over 1 s at 100 TFLOP/s.
    mfu = sft_mfu({"text": 10**9, "audio": 10**8}, 1000, 2.0, 1.0, 100.0)
    assert mfu == pytest.approx(6 * (1e12 + 1e10) / 1e14)
    # the LM head's 3e8 parameters count for the 100 labelled tokens only
    mfu = sft_mfu({"text": 10**9, "head": 3 * 10**8, "audio": 10**8}, 1000, 2.0, 1.0, 100.0, label_tokens=100)
    assert mfu == pytest.approx(6 * (1e12 + 3e10 + 1e10) / 1e14)


def test_the_audiomcq_profile_has_real_lengths(tmp_path):
    """30 s clips (750 audio tokens), the model-card prompt, half the answers with a CoT, all within 1024 tokens."""
    from audiomcq.bench import corpus as bench_corpus
    from audiomcq.data.io import read_records
    from audiomcq.models.batch import prompt_text
    from audiomcq.models.lengths import audio_tokens
    from audiomcq.models.tiny import build_processor, build_tokenizer
    from audiomcq.prompts import SYSTEM_PROMPT

    corpus = bench_corpus.write_profile("audiomcq", tmp_path)
    records = read_records(corpus["data"])
    processor = build_processor("qwen2_5_omni", build_tokenizer(bench_corpus.tokenizer_texts(corpus["data"]), 600))
    assert audio_tokens(processor, 30 * 16000) == 750 and corpus["cot"] == "simple_cot"
    assert len({r.audio_path for r in records}) == bench_corpus.CLIPS and len(records) == 128
    assert all(len(r.choices) == 4 and r.answer in r.choices for r in records)
    assert 0.35 < sum(r.simple_cot is not None for r in records) / len(records) < 0.65
    lengths = bench_corpus.sample_lengths(processor, corpus["data"], corpus["audio_root"], corpus["cot"])
    assert min(lengths) > 850 and sum(n <= bench_corpus.MAX_LENGTH for n in lengths) > 0.9 * len(lengths)
    text = prompt_text(processor, records[0].question, records[0].choices)
    assert SYSTEM_PROMPT in text and "Please choose the answer from the following options: [" in text


@pytest.mark.slow
def test_bench_train_prints_step_times_throughput_mfu_and_memory(tmp_path, capsys):
    from audiomcq.cli import main

    assert main(["bench", "train", "--work", str(tmp_path), "--steps", "3", "--peak-tflops", "1"]) == 0
    out = capsys.readouterr().out
    assert "SFT  (batch 16, packing off, sdpa, fused loss)" in out and "MFU" in out and "peak RSS" in out
    assert "rollout tokens/s" in out and "transformers rollouts" in out and "synthetic profile: 256 samples" in out


@pytest.mark.slow
def test_a_sweep_prints_one_table_row_per_setting(tmp_path, capsys):
    from audiomcq.cli import main

    assert (
        main(
            [
                "bench",
                "train",
                "--work",
                str(tmp_path),
                "--steps",
                "2",
                "--batch",
                "4",
                "--packing",
                "off",
                "on",
                "--peak-tflops",
                "1",
            ]
        )
        == 0
    )
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| synthetic |")]
    assert len(rows) == 2 and rows[0].startswith("| synthetic | 4 | off | sdpa | fused |") and "%" in rows[0]
    assert rows[1].startswith("| synthetic | 4 | on | sdpa | fused |")


def test_a_sweep_refuses_an_attention_it_cannot_run_before_training(tmp_path, capsys):
    import torch

    from audiomcq.bench.train import sweep_configs
    from audiomcq.cli import main

    configs = sweep_configs(["audiomcq"], [None], ["off", "on"], ["sdpa", "eager"], ["fused"])
    assert len(configs) == 4 and configs[2]["kernels"] == {"packing": True, "attention": "sdpa", "loss": "fused"}
    if torch.cuda.is_available():
        pytest.skip("varlen runs on a GPU")
    argv = ["bench", "train", "--work", str(tmp_path), "--packing", "off", "on", "--attention", "sdpa", "varlen"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "varlen" in err and "CUDA only" in err and "Traceback" not in err and not (tmp_path / "model").exists()


@pytest.mark.slow
def test_bench_eval_compares_the_harness_with_a_per_sample_loop(tmp_path, capsys):
    from audiomcq.cli import main

    assert main(["bench", "eval", "--work", str(tmp_path), "--items", "16", "--repeats", "3"]) == 0
    out = capsys.readouterr().out
    speedup = float(out.split("batched harness vs per-sample loop, both float32: ")[1].split()[0].rstrip("x"))
    assert "3 runs" in out and "FLOP-bound ceiling" in out  # a median of repetitions, beside its bound
    assert "both bfloat16" in out and "each in its fastest dtype" in out
    assert speedup > 1.5, out  # batching must pay even at 16 items (64 items: ~4.9x on 2 cores)
