"""GRPO starts from the SFT checkpoint the recipe's ``grpo.init`` names, and the run records which and why."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiomcq.cli import main
from audiomcq.errors import AudioMCQError
from audiomcq.jsonio import load_json
from audiomcq.train.grpo_start import parse_init

# Two SFT checkpoints (steps 1 and 2), one GRPO step whose update is exactly zero (a random model earns no reward,
# so every advantage is zero, and no weight decay): GRPO's final weights are the weights it started from.
SETS = [
    "allocation.sft_fraction=0.5",
    "allocation.augment=1",
    "grpo.trainer_args.num_generations=2",
    "grpo.trainer_args.max_completion_length=4",
    "grpo.trainer_args.dataloader_num_workers=0",
    "grpo.trainer_args.weight_decay=0.0",
    "grpo.trainer_args.beta=0.0",
    "eval.max_new_tokens=4",
    *[
        f"{stage}.trainer_args.{k}"
        for stage in ("sft", "grpo")
        for k in ("bf16=false", "deepspeed=null", "per_device_train_batch_size=4", "gradient_checkpointing=false")
    ],
    "sft.trainer_args.max_steps=2",
    "sft.trainer_args.save_steps=1",
    "grpo.trainer_args.max_steps=1",
    "grpo.trainer_args.save_steps=1",
]


@pytest.fixture(scope="module")
def pools(synth_corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pools")
    rows = [json.loads(line) for line in (synth_corpus / "train.jsonl").read_text().splitlines()][:16]
    with (tmp / "labelled.jsonl").open("w") as fh:
        for i, row in enumerate(rows):
            fh.write(json.dumps({**row, "audio-contribution": "weak" if i % 2 else "strong"}) + "\n")
    held = [json.loads(line) for line in (synth_corpus / "eval.jsonl").read_text().splitlines()][:4]
    (tmp / "held_out.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    return tmp


def _run(tiny_omni, synth_corpus, pools, out, *extra):
    args = [
        "train",
        "run",
        "--recipe",
        "weak_to_strong",
        "--model",
        str(tiny_omni),
        "--data",
        str(pools / "labelled.jsonl"),
        "--audio-root",
        str(synth_corpus),
        "--out",
        str(out),
        "--selection",
        str(pools / "held_out.jsonl"),
        *[f"--set={s}" for s in (*SETS, *extra)],
    ]
    assert main(args) == 0
    return load_json(out / "summary.json")


def _weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_grpo_starts_from_the_selected_sft_checkpoint_and_follows_the_selection(
    tiny_omni, synth_corpus, pools, tmp_path, monkeypatch
):
    from audiomcq.evaluation import harness

    real = harness.evaluate_task
    favoured = {"step": 2}

    def scored(engine, task, data, audio_root, out_dir, config, *args, **kwargs):
        """The real evaluation, then the favoured checkpoint made the clear winner (random tiny models tie)."""
        metrics = real(engine, task, data, audio_root, out_dir, config, *args, **kwargs)
        if out_dir.name == f"sft-{favoured['step']}":
            metrics["modes"]["audio"]["total"]["accuracy"] = 100.0
        return metrics

    monkeypatch.setattr(harness, "evaluate_task", scored)
    runs = {}
    for step in (2, 1):
        favoured["step"] = step
        summary = _run(tiny_omni, synth_corpus, pools, tmp_path / f"favour-{step}")
        start = summary["grpo_init"]
        assert start["init"] == "sft@best" and start["stage"] == "sft" and start["step"] == step
        assert start["path"].endswith(f"checkpoint-{step}")
        assert "selection set" in start["why"] and {c["step"] for c in start["candidates"]} == {1, 2}
        runs[step] = tmp_path / f"favour-{step}"
    for step, run in runs.items():  # GRPO really trained from there: its zero update left the start's weights
        grpo, other = _weights(run / "grpo" / "final"), 3 - step
        assert _same(grpo, _weights(run / "sft" / f"checkpoint-{step}"))
        assert not _same(grpo, _weights(run / "sft" / f"checkpoint-{other}"))


def test_a_named_step_a_missing_step_and_a_paradigm_without_sft(tiny_omni, synth_corpus, pools, tmp_path):
    summary = _run(tiny_omni, synth_corpus, pools, tmp_path / "step1", "grpo.init=sft@1")
    assert summary["grpo_init"]["path"].endswith("checkpoint-1") and "names this step" in summary["grpo_init"]["why"]
    with pytest.raises(AudioMCQError, match="no complete checkpoint at step 7"):
        from audiomcq.train.paradigm import post_train

        post_train(
            tiny_omni,
            pools / "labelled.jsonl",
            synth_corpus,
            tmp_path / "step7",
            "weak_to_strong",
            [*SETS, "grpo.init=sft@7"],
            selection=pools / "held_out.jsonl",
        )
    args = [
        "train",
        "run",
        "--recipe",
        "all_grpo",
        "--model",
        str(tiny_omni),
        "--data",
        str(pools / "labelled.jsonl"),
        "--audio-root",
        str(synth_corpus),
        "--out",
        str(tmp_path / "all_grpo"),
        *[f"--set={s}" for s in SETS],
    ]
    assert main(args) == 0
    start = load_json(tmp_path / "all_grpo" / "summary.json")["grpo_init"]
    assert start["stage"] == "base" and start["path"] == str(tiny_omni)


def test_sft_at_best_without_a_selection_set_is_refused_before_training(tiny_omni, synth_corpus, pools, tmp_path):
    from audiomcq.train.paradigm import post_train

    with pytest.raises(AudioMCQError, match="needs a selection set"):
        post_train(tiny_omni, pools / "labelled.jsonl", synth_corpus, tmp_path, "weak_to_strong", SETS)
    assert not (tmp_path / "sft").exists()
    with pytest.raises(AudioMCQError, match="sft@best, sft@final or sft@STEP"):
        parse_init("sft@last")
