"""A training run killed with SIGKILL and restarted ends bit-identical to an uninterrupted run (CPU, tiny model)."""

import os
import subprocess
import sys

import pytest
from conftest import kill_at_first_checkpoint

from audiomcq.train.common import COMPLETE, latest_complete_checkpoint


def _train(method, tiny_omni, synth_corpus, out, steps, save):
    sets = ["--set", f"{method}.steps={steps}", "--set", f"{method}.save_steps={save}"]
    return [
        sys.executable,
        "-m",
        "audiomcq.cli",
        "train",
        method,
        "--model",
        str(tiny_omni),
        "--data",
        str(synth_corpus / "train.jsonl"),
        "--audio-root",
        str(synth_corpus),
        "--out",
        str(out),
        "--recipe",
        "smoke",
        *sets,
    ]


@pytest.mark.parametrize(("method", "steps", "save"), [("sft", 24, 4), ("grpo", 12, 3)])
def test_killed_training_resumes_bit_identical(method, steps, save, tiny_omni, synth_corpus, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(
        _train(method, tiny_omni, synth_corpus, whole, steps, save), check=True, env=env, capture_output=True
    )
    kill_at_first_checkpoint(_train(method, tiny_omni, synth_corpus, killed, steps, save), killed, env)
    done = subprocess.run(
        _train(method, tiny_omni, synth_corpus, killed, steps, save),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"resumed from {killed}" in done.stdout
    weights = "model.safetensors"
    assert (killed / "final" / weights).read_bytes() == (whole / "final" / weights).read_bytes()


def test_an_unmarked_checkpoint_is_never_resumed_from(tmp_path):
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / COMPLETE).write_text("4")
    (tmp_path / "checkpoint-8").mkdir()  # killed while saving: no marker
    assert latest_complete_checkpoint(tmp_path).name == "checkpoint-4"
    assert latest_complete_checkpoint(tmp_path / "empty") is None
