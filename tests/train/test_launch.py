"""Scale-out: the launcher command lines, and a real two-process paradigm run under torchrun (gloo on CPU)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from audiomcq.errors import AudioMCQError
from audiomcq.train.launch import Launch, command


def test_torchrun_command_carries_the_geometry_and_reruns_the_cli():
    cmd = command(Launch(4, nnodes=2, node_rank=1, master_addr="trainer-0", master_port=23456), ["train", "sft"])
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    for flag in (
        "--nproc-per-node=4",
        "--nnodes=2",
        "--node-rank=1",
        "--master-addr=trainer-0",
        "--master-port=23456",
    ):
        assert flag in cmd
    assert cmd[-4:] == ["-m", "audiomcq.cli", "train", "sft"]


def test_accelerate_command_counts_processes_over_all_nodes():
    cmd = command(Launch(8, nnodes=2, node_rank=0, launcher="accelerate"), ["train", "grpo"])
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert "--num_processes=16" in cmd and "--num_machines=2" in cmd and "--multi_gpu" in cmd
    assert cmd[-4:] == ["-m", "audiomcq.cli", "train", "grpo"]


@pytest.mark.parametrize(
    "launch", [Launch(0), Launch(2, nnodes=2, node_rank=2), Launch(2, launcher="mpirun")], ids=str
)
def test_impossible_launches_are_refused(launch):
    with pytest.raises(AudioMCQError):
        command(launch, ["train", "sft"])


def test_accelerate_on_cpu_is_refused_before_starting_anything(tmp_path):
    import torch

    from audiomcq.cli import main

    if torch.cuda.is_available():
        pytest.skip("a GPU machine may launch accelerate")

    args = [
        "train",
        "sft",
        "--model",
        "m",
        "--data",
        "d",
        "--audio-root",
        ".",
        "--out",
        str(tmp_path / "o"),
        "--nproc-per-node",
        "2",
        "--launcher",
        "accelerate",
    ]
    assert main(args) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_two_process_paradigm_run_splits_the_data_and_writes_once(tiny_omni, synth_corpus, tmp_path):
    """``train run --nproc-per-node 2``: both ranks train (each epoch takes half the steps of one process), rank 0
    alone writes the allocation, checkpoints with their markers, and the final models."""
    from audiomcq.data.io import read_records, write_records
    from audiomcq.jsonio import load_json

    records = read_records(synth_corpus / "train.jsonl")
    for r in records:
        r.audio_contribution = "weak" if r.extra["text_answerable"] else "strong"
    write_records(tmp_path / "labelled.jsonl", records)
    write_records(tmp_path / "held_out.jsonl", read_records(synth_corpus / "eval.jsonl"))
    sets = ["allocation.sft_fraction=0.25", "allocation.augment=2"]
    for stage in ("sft", "grpo"):
        sets += [
            f"{stage}.trainer_args.{k}"
            for k in (
                "bf16=false",
                "deepspeed=null",
                "per_device_train_batch_size=4",
                "save_steps=2",
                "save_only_model=false",
            )
        ]
    sets += [
        "sft.trainer_args.num_train_epochs=1",
        "sft.trainer_args.max_steps=-1",
        "grpo.trainer_args.max_steps=2",
        "grpo.trainer_args.num_generations=2",
        "grpo.trainer_args.max_completion_length=4",
        "grpo.trainer_args.dataloader_num_workers=0",
    ]
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "audiomcq.cli",
        "train",
        "run",
        "--recipe",
        "mixed_to_strong",
        "--model",
        str(tiny_omni),
        "--data",
        str(tmp_path / "labelled.jsonl"),
        "--audio-root",
        str(synth_corpus),
        "--out",
        str(run),
        "--selection",
        str(tmp_path / "held_out.jsonl"),
        "--nproc-per-node",
        "2",
        "--master-port",
        "29517",
        *[f"--set={s}" for s in sets],
    ]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("mixed_to_strong: sft 16") == 1  # only rank 0 reports
    sft_rows = len(read_records(run / "data" / "sft.jsonl"))
    assert sft_rows == 16 * 2
    summary = load_json(run / "summary.json")
    assert summary["sft"]["steps"] == sft_rows // (2 * 4)  # one epoch over two ranks of batch 4
    assert summary["grpo"]["steps"] == 2
    for stage in ("sft", "grpo"):
        ckpt = {p.name for p in (run / stage / "checkpoint-2").iterdir()}
        assert {"COMPLETE", "rng_state_0.pth", "rng_state_1.pth", "optimizer.pt"} <= ckpt, (stage, ckpt)
    assert (run / "grpo" / "final" / "processor_config.json").is_file()
    held_out = read_records(tmp_path / "held_out.jsonl")
    assert len(read_records(run / "data" / "selection.jsonl")) == sum(len(r.choices) for r in held_out)
