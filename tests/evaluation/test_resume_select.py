"""``select --run``: in S3 only checkpoints whose own upload completed are scored, and a rerun into an old
``--out`` never scores another run's checkpoints with the old one's answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from audiomcq.cli import main
from audiomcq.errors import AudioMCQError
from audiomcq.evaluation.select import select_run
from audiomcq.infra import storage
from audiomcq.jsonio import load_json


def _run(root: Path, model: Path, selection: Path, steps=(1,)) -> Path:
    """A post-training run's layout holding ``model`` as each SFT checkpoint, marked complete."""
    for step in steps:
        ckpt = root / "sft" / f"checkpoint-{step}"
        shutil.copytree(model, ckpt)
        (ckpt / "COMPLETE").write_text(str(step))
    (root / "data").mkdir(parents=True)
    shutil.copy(selection, root / "data" / "selection.jsonl")
    return root


@pytest.fixture
def selection(synth_corpus, tmp_path) -> Path:
    path = tmp_path / "selection.jsonl"
    path.write_text("".join((synth_corpus / "eval.jsonl").read_text().splitlines(keepends=True)[:4]))
    return path


def test_an_s3_checkpoint_without_its_own_marker_is_skipped(
    s3, tiny_omni, synth_corpus, selection, tmp_path, monkeypatch
):
    monkeypatch.setenv("AUDIOMCQ_STAGING", str(tmp_path / "staging"))
    run = _run(tmp_path / "run", tiny_omni, selection, steps=(1, 2))
    storage.publish(run / "sft" / "checkpoint-1", "s3://data/run/sft/checkpoint-1")
    half = run / "sft" / "checkpoint-2"  # every file up, its COMPLETE last, but killed before the prefix's marker
    for path in sorted(half.iterdir(), key=lambda p: p.name == "COMPLETE"):
        s3.fput_object("data", f"run/sft/checkpoint-2/{path.name}", str(path))
    s3.fput_object("data", "run/data/selection.jsonl", str(selection))
    out = tmp_path / "out"
    assert (
        main(
            [
                "select",
                "--run",
                "s3://data/run",
                "--audio-root",
                str(synth_corpus),
                "--out",
                str(out),
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    picked = load_json(out / "selection.json")
    assert [(c["stage"], c["step"]) for c in picked["candidates"]] == [("sft", 1)]
    assert not (out / "sft-2").exists()


def test_selecting_another_run_into_an_old_out_is_refused(
    tiny_omni, tiny_qwen2_audio, synth_corpus, selection, tmp_path
):
    first = _run(tmp_path / "a", tiny_omni, selection)
    second = _run(tmp_path / "b", tiny_qwen2_audio, selection)
    out = tmp_path / "out"
    select_run(first, synth_corpus, out, max_new_tokens=4)
    with pytest.raises(AudioMCQError, match=r"sft-1/work/audio: .*model \("):
        select_run(second, synth_corpus, out, max_new_tokens=4)
    again = select_run(second, synth_corpus, out, max_new_tokens=4, fresh=True)
    assert again == {**select_run(second, synth_corpus, tmp_path / "new", max_new_tokens=4), "run": str(second)}


def test_select_cli_refuses_another_run_in_an_old_out_until_fresh(
    tiny_omni, tiny_qwen2_audio, synth_corpus, selection, tmp_path, capsys
):
    first = _run(tmp_path / "a", tiny_omni, selection)
    second = _run(tmp_path / "b", tiny_qwen2_audio, selection)
    out = tmp_path / "out"

    def select(run: Path, *extra: str) -> int:
        return main(
            [
                "select",
                "--run",
                str(run),
                "--audio-root",
                str(synth_corpus),
                "--out",
                str(out),
                "--max-new-tokens",
                "4",
                *extra,
            ]
        )

    assert select(first) == 0
    capsys.readouterr()
    assert select(second) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model (" in err and "--fresh" in err, err
    assert select(second, "--fresh") == 0
    assert load_json(out / "selection.json")["run"] == str(second)
