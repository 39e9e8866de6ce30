"""``select --run`` over a real post-training run's checkpoints, and ``report`` in the paper's views."""

from __future__ import annotations

import pytest

from audiomcq.cli import main
from audiomcq.evaluation.select import RULE, choose, select_evaluated
from audiomcq.jsonio import load_json, write_json


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
    sets = [
        "allocation.sft_fraction=0.25",
        "allocation.augment=1",
        "grpo.trainer_args.num_generations=2",
        "grpo.trainer_args.max_completion_length=4",
        "grpo.trainer_args.dataloader_num_workers=0",
    ]
    for stage in ("sft", "grpo"):
        sets += [
            f"{stage}.trainer_args.{k}"
            for k in ("bf16=false", "deepspeed=null", "max_steps=2", "per_device_train_batch_size=4", "save_steps=1")
        ]
    run = tmp / "run"
    assert (
        main(
            [
                "train",
                "run",
                "--recipe",
                "mixed_to_strong",
                "--model",
                str(tiny_omni),
                "--data",
                str(tmp / "labelled.jsonl"),
                "--audio-root",
                str(synth_corpus),
                "--out",
                str(run),
                "--selection",
                str(tmp / "held_out.jsonl"),
                *[f"--set={s}" for s in sets],
            ]
        )
        == 0
    )
    return run


def test_select_run_evaluates_every_complete_checkpoint_and_states_why(run_dir, synth_corpus, tmp_path):
    (run_dir / "grpo" / "checkpoint-1" / "COMPLETE").rename(run_dir / "grpo" / "checkpoint-1" / "was-complete")
    try:
        assert (
            main(
                [
                    "select",
                    "--run",
                    str(run_dir),
                    "--audio-root",
                    str(synth_corpus),
                    "--out",
                    str(tmp_path),
                    "--max-new-tokens",
                    "6",
                ]
            )
            == 0
        )
    finally:
        (run_dir / "grpo" / "checkpoint-1" / "was-complete").rename(run_dir / "grpo" / "checkpoint-1" / "COMPLETE")
    sel = load_json(tmp_path / "selection.json")
    seen = [(c["stage"], c["step"]) for c in sel["candidates"]]
    assert seen == [("sft", 1), ("sft", 2), ("grpo", 2)]  # unmarked grpo checkpoint-1 skipped; finals = step 2
    assert sel["rule"] == RULE
    # by the rule: accuracy, then AC-strong accuracy, then the earliest (the candidates are in training order)
    first_best = min(sel["candidates"], key=lambda c: (-c["accuracy"], -c["ac_strong"]))
    assert (sel["selected"]["stage"], sel["selected"]["step"]) == (first_best["stage"], first_best["step"])
    assert sel["why"].startswith(f"{first_best['stage']} step {first_best['step']} scored")
    n_items = sum(1 for _ in (run_dir / "data" / "selection.jsonl").open())
    metrics = load_json(tmp_path / "sft-1" / "metrics.json")
    assert metrics["modes"]["audio"]["total"]["count"] == n_items  # the position-balanced set, every item
    assert all(c["ac_strong"] is not None for c in sel["candidates"])


def test_report_has_the_table_and_the_curves(run_dir, tiny_omni, synth_corpus, tmp_path):
    final = run_dir / "grpo" / "final"
    assert (
        main(
            [
                "eval",
                "--model",
                str(final),
                "--data",
                str(synth_corpus / "eval.jsonl"),
                "--audio-root",
                str(synth_corpus),
                "--out",
                str(tmp_path / "eval"),
                "--max-new-tokens",
                "6",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "report",
                "--run",
                f"m2s={run_dir}",
                "--audio-root",
                str(synth_corpus),
                "--eval",
                f"m2s/grpo-2={tmp_path / 'eval'}",
                "--out",
                str(tmp_path / "report"),
                "--max-new-tokens",
                "6",
            ]
        )
        == 0
    )
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


def _candidate(name: str, stage: str, step: int, accuracy: float, strong: float | None, silence: float | None) -> dict:
    contribution = None if silence is None else accuracy - silence
    scores = {"accuracy": accuracy, "ac_strong": strong, "audio_contribution": contribution}
    return {"name": name, "stage": stage, "step": step, **scores}


def test_the_rule_breaks_ties_by_ac_strong_then_audio_contribution_then_the_earliest_checkpoint():
    def pick(*candidates):
        return choose([_candidate(*c) for c in candidates])["name"]

    assert pick(("a", "grpo", 9, 80.0, 10.0, 70.0), ("b", "sft", 1, 79.0, 99.0, 0.0)) == "a"  # accuracy first
    assert pick(("a", "sft", 1, 80.0, 60.0, 0.0), ("b", "grpo", 9, 80.0, 61.0, 70.0)) == "b"  # then AC-strong
    assert pick(("a", "sft", 1, 80.0, 60.0, 50.0), ("b", "grpo", 9, 80.0, 60.0, 40.0)) == "b"  # then contribution
    assert pick(("a", "grpo", 1, 80.0, 60.0, 50.0), ("b", "sft", 9, 80.0, 60.0, 50.0)) == "b"  # sft before grpo
    assert pick(("a", "sft", 9, 80.0, 60.0, 50.0), ("b", "sft", 2, 80.0, 60.0, 50.0)) == "b"  # the lower step
    assert pick(("b", "base", 0, 80.0, 60.0, 50.0), ("a", "sft", 0, 80.0, 60.0, 50.0)) == "b"  # the base first
    assert pick(("b", "sft", 2, 80.0, 60.0, 50.0), ("a", "sft", 2, 80.0, 60.0, 50.0)) == "a"  # then the name
    assert pick(("a", "sft", 1, 80.0, None, None), ("b", "grpo", 2, 80.0, 1.0, None)) == "b"  # unmeasured ranks last
    assert pick(("a", "sft", 1, 0.3 - 0.2, None, None), ("b", "grpo", 2, 0.1, 1.0, None)) == "b"  # float noise ties


def _evaluated(folder, rows: dict) -> str:
    """A metrics directory as the demo pipeline's evaluate step writes it."""
    index = {}
    for name, (stage, step, audio, strong, silence) in rows.items():
        with_audio = {"total": {"accuracy": audio}, "ac_strong": {"accuracy": strong, "count": 107}}
        modes = {"audio": with_audio, "silence": {"total": {"accuracy": silence}}}
        task = {"task": "synthetic", "modes": modes, "audio_contribution": audio - silence}
        index[name] = {"model": f"models/{name}", "tasks": {"synthetic": task}, "stage": stage, "step": step}
    write_json(folder / "metrics.json", index)
    return str(folder)


def test_the_demos_tie_goes_to_the_larger_audio_contribution_at_every_entry_point(tmp_path, capsys):
    """The last demo run's held-out numbers: Mixed-to-Strong's SFT and GRPO models tie on accuracy with audio and
    on the strong-AC subset; GRPO answers far fewer questions in silence, so its audio contribution decides."""
    base = _evaluated(tmp_path / "base", {"base": ("base", 0, 90.5, 84.7, 45.0)})
    w2s = {
        "weak_to_strong/sft": ("sft", 125, 90.5, 84.2, 44.0),
        "weak_to_strong/grpo": ("grpo", 250, 89.8, 92.1, 40.5),
    }
    m2s = {
        "mixed_to_strong/sft": ("sft", 125, 90.8, 93.5, 44.8),
        "mixed_to_strong/grpo": ("grpo", 250, 90.8, 93.5, 10.5),
    }
    runs = [_evaluated(tmp_path / "w2s", w2s), _evaluated(tmp_path / "m2s", m2s)]
    chosen = select_evaluated([*runs, base])
    assert (chosen["selected"], chosen["model"]) == ("mixed_to_strong/grpo", "models/mixed_to_strong/grpo")
    assert chosen["rule"] == RULE and chosen["audio_contribution"] == 90.8 - 10.5
    assert "tied with mixed_to_strong/sft: the higher audio contribution decided (80.3 vs 46.0)" in chosen["why"]
    from audiomcq.stages.demo import select_stage

    assert select_stage([*runs, base], str(tmp_path)) == chosen == load_json(tmp_path / "selection.json")
    assert main(["select", "--evals", *runs, base, "--out", str(tmp_path / "cli")]) == 0
    assert load_json(tmp_path / "cli" / "selection.json") == chosen
    assert capsys.readouterr().out.startswith("select: mixed_to_strong/grpo scored 90.8%, 0.3 points above")
