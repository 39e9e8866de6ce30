"""Token counts from file headers equal the processors' own expansion; over-long records are skipped, counted and
named (SFT, GRPO, `data validate`) instead of stopping a run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from audiomcq.cli import main
from audiomcq.data.record import MCQRecord
from audiomcq.jsonio import iter_jsonl

SAMPLES = [1600, 1601, 16000, 16001, 16159, 16160, 16161, 47999, 160000, 480000, 480001, 500000]


@pytest.mark.parametrize("family", ["omni", "qwen2_audio"])
def test_token_counts_equal_the_processor_whatever_else_is_in_the_batch(family, tiny_omni, tiny_qwen2_audio):
    from audiomcq.models import load_model
    from audiomcq.models.batch import encode_prompts, prompt_text
    from audiomcq.models.lengths import record_tokens

    processor = load_model(tiny_omni if family == "omni" else tiny_qwen2_audio).processor
    record = MCQRecord.from_dict(
        {
            "id": "x",
            "question": "What is heard?",
            "choices": ["a dog", "rain"],
            "answer": "rain",
            "audio_path": "x.wav",
        }
    )
    text = prompt_text(processor, record.question, record.choices)
    for n in SAMPLES:
        alone = encode_prompts(processor, [text], [np.zeros(n, np.float32)])
        # beside a longer clip (Omni pads a batch to its longest clip): the count must not change
        pair = encode_prompts(processor, [text, text], [np.zeros(n, np.float32), np.zeros(n + 777, np.float32)])
        expected = record_tokens(processor, record, n)
        assert int(alone["attention_mask"].sum()) == expected == int(pair["attention_mask"][0].sum()), n


def test_header_samples_match_the_loader_at_any_rate(tmp_path):
    from audiomcq.audio import header_samples, load_audio

    for rate in (8000, 22050, 32000, 44100, 48000):
        for frames in (1021, 12345, 44101):
            path = tmp_path / f"{rate}-{frames}.wav"
            sf.write(path, np.zeros((frames, 2), np.float32), rate)
            assert header_samples(path) == len(load_audio(path)), (rate, frames)


@pytest.fixture
def long_pool(synth_corpus, tmp_path):
    """The first 8 training records, one of them with a 20 s clip (over any small max_length)."""
    rows = [json.loads(line) for line in (synth_corpus / "train.jsonl").read_text().splitlines()][:8]
    sf.write(tmp_path / "long.wav", np.zeros(20 * 16000, np.float32), 16000)
    rows[3] = {**rows[3], "id": "the-long-one", "audio_path": str(tmp_path / "long.wav")}
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "pool.jsonl"


def test_sft_and_grpo_skip_over_long_records_and_name_them(tiny_omni, synth_corpus, long_pool, tmp_path):
    from audiomcq.train.grpo import build_grpo_trainer
    from audiomcq.train.sft import build_sft_trainer

    # 20 s of audio is 500 audio tokens alone; the 1-3 s clips stay far below 400
    sft, _ = build_sft_trainer(
        tiny_omni, long_pool, synth_corpus, tmp_path / "sft", steps=1, batch_size=8, trainer_args={"max_length": 400}
    )
    assert len(sft.train_dataset) == 7 and "the-long-one" not in sft.train_dataset["id"]
    skipped = [row for _, row in iter_jsonl(tmp_path / "sft" / "skipped.jsonl")]
    assert [(s["id"], s["reason"]) for s in skipped] == [("the-long-one", "over max_length")]
    assert skipped[0]["tokens"] > 400
    sft.train()  # the whole set in one batch: the collator would have refused the long record
    grpo, _ = build_grpo_trainer(
        tiny_omni,
        long_pool,
        synth_corpus,
        tmp_path / "grpo",
        steps=1,
        max_length=400,
        prompts_per_step=1,
        num_generations=2,
    )
    assert len(grpo.train_dataset) == 7
    assert [row["id"] for _, row in iter_jsonl(tmp_path / "grpo" / "skipped.jsonl")] == ["the-long-one"]


def test_data_validate_counts_over_long_records_before_a_run(tiny_omni, synth_corpus, long_pool, capsys):
    args = ["data", "validate", str(long_pool), "--audio-root", str(synth_corpus), "--model", str(tiny_omni)]
    assert main([*args, "--max-length", "400"]) == 1
    out = capsys.readouterr().out
    assert "1 of 8 records over 400 tokens" in out and "over: the-long-one" in out
    assert main([*args, "--max-length", "4000"]) == 0
    assert main(["data", "validate", str(long_pool), "--max-length", "400"]) == 2  # no model to count with: usage
    assert "go together" in capsys.readouterr().err
