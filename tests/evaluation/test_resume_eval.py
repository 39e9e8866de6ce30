"""``audiomcq eval`` resumes only work the same model and settings made for the same items: another model into an
old ``--out``, a killed run resumed with another model, a changed budget or chunk size are refused naming the
change (``--fresh`` starts afresh); an edited item is answered again; repeated ids are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from audiomcq.cli import main
from audiomcq.jsonio import load_json


def _eval(model: Path, data: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "--model",
        str(model),
        "--data",
        str(data),
        "--audio-root",
        str(root),
        "--out",
        str(out),
        "--no-silence",
        "--chunk-size",
        "4",
        "--max-new-tokens",
        "6",
        *extra,
    ]


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("audiomcq:")]


@pytest.fixture
def data(synth_corpus, tmp_path) -> Path:
    path = tmp_path / "eval.jsonl"
    path.write_text("".join((synth_corpus / "eval.jsonl").read_text().splitlines(keepends=True)[:12]))
    return path


def _accuracy(out: Path) -> dict:
    return load_json(out / "synthetic" / "metrics.json")["modes"]["audio"]["total"]


def test_another_model_into_an_old_out_is_refused_and_fresh_starts_afresh(
    tiny_omni, tiny_qwen2_audio, synth_corpus, data, tmp_path, capsys
):
    old = tmp_path / "old"
    assert main(_eval(tiny_omni, data, synth_corpus, old)) == 0
    capsys.readouterr()
    assert main(_eval(tiny_qwen2_audio, data, synth_corpus, old)) == 1
    err = capsys.readouterr().err
    lines = _errors(err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "model (" in lines[0] and "--fresh" in lines[0] and str(old / "synthetic" / "work" / "audio") in lines[0]
    assert main(_eval(tiny_qwen2_audio, data, synth_corpus, old, "--fresh")) == 0
    assert main(_eval(tiny_qwen2_audio, data, synth_corpus, tmp_path / "new")) == 0
    assert _accuracy(old) == _accuracy(tmp_path / "new")  # the new model's score, not the old one's
    old_rows = (old / "synthetic" / "predictions-audio.jsonl").read_bytes()
    assert old_rows == (tmp_path / "new" / "synthetic" / "predictions-audio.jsonl").read_bytes()


def test_a_killed_run_resumed_with_another_model_is_refused_not_blended(
    tiny_omni, tiny_qwen2_audio, synth_corpus, data, tmp_path, capsys
):
    out = tmp_path / "out"
    assert main(_eval(tiny_omni, data, synth_corpus, out)) == 0
    work = out / "synthetic" / "work" / "audio"
    for part in sorted(work.glob("part-*.jsonl"))[1:]:  # as if killed after the first chunk
        part.unlink()
    (out / "synthetic" / "metrics.json").unlink()
    capsys.readouterr()
    assert main(_eval(tiny_qwen2_audio, data, synth_corpus, out)) == 1
    assert "model (" in capsys.readouterr().err
    assert not (out / "synthetic" / "metrics.json").exists()  # nothing reported from the blend


def test_a_changed_budget_or_chunk_size_is_refused_naming_the_setting(tiny_omni, synth_corpus, data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_eval(tiny_omni, data, synth_corpus, out)) == 0
    capsys.readouterr()
    args = _eval(tiny_omni, data, synth_corpus, out)
    args[args.index("--max-new-tokens") + 1] = "3"
    assert main(args) == 1
    lines = _errors(capsys.readouterr().err)
    assert len(lines) == 1 and "setting max_new_tokens (6 -> 3)" in lines[0]
    args = _eval(tiny_omni, data, synth_corpus, out)
    args[args.index("--chunk-size") + 1] = "5"
    assert main(args) == 1
    lines = _errors(capsys.readouterr().err)
    assert len(lines) == 1 and "chunk_size (4 -> 5)" in lines[0]


def test_an_edited_item_is_answered_again_and_the_rest_resumes(tiny_omni, synth_corpus, data, tmp_path):
    out = tmp_path / "out"
    assert main(_eval(tiny_omni, data, synth_corpus, out)) == 0
    work = out / "synthetic" / "work" / "audio"
    stamps = {p.name: p.stat().st_mtime_ns for p in work.glob("part-*.jsonl")}
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[5]["question"] = "Which of these is heard, if anything at all?"  # chunk 1 (items 4..7)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(_eval(tiny_omni, data, synth_corpus, out)) == 0
    now = {p.name: p.stat().st_mtime_ns for p in work.glob("part-*.jsonl")}
    assert now["part-000001.jsonl"] != stamps["part-000001.jsonl"]  # answered again
    assert {k: v for k, v in now.items() if k != "part-000001.jsonl"} == {
        k: v for k, v in stamps.items() if k != "part-000001.jsonl"
    }
    assert main(_eval(tiny_omni, data, synth_corpus, tmp_path / "fresh")) == 0
    fresh = (tmp_path / "fresh" / "synthetic" / "predictions-audio.jsonl").read_bytes()
    assert (out / "synthetic" / "predictions-audio.jsonl").read_bytes() == fresh


def test_a_shorter_input_drops_the_parts_past_its_end(tiny_omni, synth_corpus, data, tmp_path):
    out = tmp_path / "out"
    assert main(_eval(tiny_omni, data, synth_corpus, out)) == 0
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:6]))
    assert main(_eval(tiny_omni, data, synth_corpus, out)) == 0
    work = out / "synthetic" / "work" / "audio"
    assert sorted(p.name for p in work.glob("part-*.jsonl")) == ["part-000000.jsonl", "part-000001.jsonl"]
    assert load_json(out / "synthetic" / "metrics.json")["items"] == 6


def test_repeated_ids_are_refused_naming_the_id(tiny_omni, synth_corpus, data, tmp_path, capsys):
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[7]["id"] = rows[2]["id"]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(_eval(tiny_omni, data, synth_corpus, tmp_path / "out")) == 1
    lines = _errors(capsys.readouterr().err)
    assert len(lines) == 1 and repr(rows[2]["id"]) in lines[0] and "items 3 and 8" in lines[0]


def test_leftover_temporary_files_of_a_killed_run_are_removed(tiny_omni, synth_corpus, data, tmp_path):
    out = tmp_path / "out"
    assert main(_eval(tiny_omni, data, synth_corpus, out)) == 0
    leftovers = [
        out / "synthetic" / "work" / "audio" / ".part-000001.jsonl.x1y2.tmp",
        out / "synthetic" / ".metrics.json.a7b8.tmp",
    ]
    for path in leftovers:
        path.write_text("half a file")
    assert main(_eval(tiny_omni, data, synth_corpus, out)) == 0
    assert not any(path.exists() for path in leftovers)


def test_an_old_work_directory_without_fingerprint_is_not_trusted(tiny_omni, synth_corpus, data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_eval(tiny_omni, data, synth_corpus, out)) == 0
    work = out / "synthetic" / "work" / "audio"
    (work / "fingerprint.json").unlink()  # as made by a version that kept none
    capsys.readouterr()
    assert main(_eval(tiny_omni, data, synth_corpus, out)) == 1
    assert "nothing records what made these parts" in capsys.readouterr().err
    shutil.rmtree(work)
    assert main(_eval(tiny_omni, data, synth_corpus, out)) == 0
