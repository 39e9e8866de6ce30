"""``select --run`` over a real post-training run's checkpoints, and ``report`` in the paper's views."""

from __future__ import annotations

import pytest

from audiomcq.cli import main
from audiomcq.jsonio import load_json


@pytest.fixture(scope="module")
def run_dir(tiny_omni, synth_corpus, tmp_path_factory):
    """A mixed_to_strong run on the tiny model: SFT and GRPO with a checkpoint every step, and a selection set."""
    from audiomcq.data.io import read_records, write_records

    tmp = tmp_path_factory.mktemp("paradigm")
    records = read_records(synth_corpus / "train.jsonl")
    for r in records:
        r.audio_contribution = "weak" if r.extra["text_answerable"] else "strong"
    write_records(tmp / "labelled.jsonl", records)
    held_out = read_records(synth_corpus / "eval.jsonl")
    for r in held_out:
        r.audio_contribution = "weak" if r.extra["text_answerable"] else "strong"
    write_records(tmp / "held_out.jsonl", held_out)
    sets = ["allocation.sft_fraction=0.25", "allocation.augment=1", "grpo.trainer_args.num_generations=2",
            "grpo.trainer_args.max_completion_length=4", "grpo.trainer_args.dataloader_num_workers=0"]  # fmt: skip
    for stage in ("sft", "grpo"):
        sets += [f"{stage}.trainer_args.{k}" for k in ("bf16=false", "deepspeed=null", "max_steps=2",
                                                        "per_device_train_batch_size=4", "save_steps=1")]  # fmt: skip
    run = tmp / "run"
    assert main(["train", "run", "--recipe", "mixed_to_strong", "--model", str(tiny_omni), "--data",
                 str(tmp / "labelled.jsonl"), "--audio-root", str(synth_corpus), "--out", str(run), "--selection",
                 str(tmp / "held_out.jsonl"), *[f"--set={s}" for s in sets]]) == 0  # fmt: skip
    return run


def test_select_run_evaluates_every_complete_checkpoint_and_states_why(run_dir, synth_corpus, tmp_path):
    (run_dir / "grpo" / "checkpoint-1" / "COMPLETE").rename(run_dir / "grpo" / "checkpoint-1" / "was-complete")
    try:
        assert main(["select", "--run", str(run_dir), "--audio-root", str(synth_corpus), "--out", str(tmp_path),
                     "--max-new-tokens", "6"]) == 0  # fmt: skip
    finally:
        (run_dir / "grpo" / "checkpoint-1" / "was-complete").rename(run_dir / "grpo" / "checkpoint-1" / "COMPLETE")
    sel = load_json(tmp_path / "selection.json")
    seen = [(c["stage"], c["step"]) for c in sel["candidates"]]
    assert seen == [("sft", 1), ("sft", 2), ("grpo", 2)]  # unmarked grpo checkpoint-1 skipped; finals = step 2
    best = max(sel["candidates"], key=lambda c: c["accuracy"])["accuracy"]
    first_best = next(c for c in sel["candidates"] if c["accuracy"] == best)
    assert (sel["selected"]["stage"], sel["selected"]["step"]) == (first_best["stage"], first_best["step"])
    assert sel["why"].startswith(f"{first_best['stage']} step {first_best['step']} scored")
    n_items = sum(1 for _ in (run_dir / "data" / "selection.jsonl").open())
    metrics = load_json(tmp_path / "sft-1" / "metrics.json")
    assert metrics["modes"]["audio"]["total"]["count"] == n_items  # the position-balanced set, every item
    assert all(c["ac_strong"] is not None for c in sel["candidates"])


def test_report_has_the_table_and_the_curves(run_dir, tiny_omni, synth_corpus, tmp_path):
    final = run_dir / "grpo" / "final"
    assert main(["eval", "--model", str(final), "--data", str(synth_corpus / "eval.jsonl"), "--audio-root",
                 str(synth_corpus), "--out", str(tmp_path / "eval"), "--max-new-tokens", "6"]) == 0  # fmt: skip
    assert main(["report", "--run", f"m2s={run_dir}", "--audio-root", str(synth_corpus), "--eval",
                 f"m2s/grpo-2={tmp_path / 'eval'}", "--out", str(tmp_path / "report"), "--max-new-tokens", "6"]) == 0  # fmt: skip  # noqa: E501
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| checkpoint | selection set | selection AC-strong | synthetic | synthetic AC-strong |" in md
    for row in ("m2s/sft-1", "m2s/sft-2", "m2s/grpo-1", "m2s/grpo-2"):
        assert f"| {row}" in md
    assert md.count("★") == 1 and "![accuracy vs step](curves.png)" in md
    synthetic = load_json(tmp_path / "eval" / "metrics.json")["tasks"]["synthetic"]["modes"]["audio"]["total"]
    grpo_row = next(line for line in md.splitlines() if line.startswith("| m2s/grpo-2"))
    assert f"| {synthetic['accuracy']:.1f} |" in grpo_row
    assert (tmp_path / "report" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in (tmp_path / "report" / "report.html").read_text()
