"""The CLI as users run it: help text, one-line errors, and each data/score command end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import record_dict

from audiomcq.cli import build_parser, main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("score", "data", "prompt"):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [["score"], ["data"], ["data", "validate"], ["data", "convert"], ["data", "allocate"], ["data", "balance"]],
)
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    assert "usage: audiomcq" in capsys.readouterr().out


def test_score_writes_the_contract_json_and_prints_a_table(mmau_file, tmp_path, capsys):
    items = json.loads(mmau_file.read_text())[:10]
    for i, item in enumerate(items):
        item["model_output"] = item["answer"] if i < 7 else "none of these"
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(items))
    out_json = tmp_path / "metrics" / "mmau.json"
    code, out, _ = run(capsys, "score", "--benchmark", "mmau", "--predictions", str(pred), "--output", str(out_json))
    assert code == 0
    result = json.loads(out_json.read_text())
    assert result["total"] == {"accuracy": 70.0, "correct": 7, "count": 10, "unparsed": 0, "missing": 0}
    assert set(result) >= {"total", "strict", "breakdown", "items"}
    assert result["items"][0] == {"id": items[0]["id"], "correct": True}
    assert "official" in out and "70.00%" in out and "by task:" in out


def test_bad_input_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "question": \n')
    proc = subprocess.run(
        [sys.executable, "-m", "audiomcq.cli", "score", "--benchmark", "mmar", "--predictions", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"audiomcq: error: {bad}:1: not valid JSON (Expecting value at column 22)"
    ]
    assert "Traceback" not in proc.stderr


def test_missing_file_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "score", "--benchmark", "mmau", "--predictions", str(tmp_path / "nope.json"))
    assert code == 1
    assert err.strip() == f"audiomcq: error: {tmp_path / 'nope.json'}: no such file"


def test_validate_strict_and_lenient(write_jsonl, tmp_path, capsys):
    path = write_jsonl([record_dict(id="a"), record_dict(id="b", answer="Nope"), record_dict(id="c")])
    code, _, err = run(capsys, "data", "validate", str(path))
    assert code == 1 and err.strip() == f"audiomcq: error: {path}:2: answer 'Nope' is not one of the choices"
    clean = tmp_path / "clean.jsonl"
    code, out, _ = run(capsys, "data", "validate", str(path), "--lenient", "--output", str(clean))
    assert code == 1
    assert "3 read, 2 valid, 1 quarantined (answer_not_in_choices 1)" in out
    assert [json.loads(x)["id"] for x in clean.read_text().splitlines()] == ["a", "c"]
    assert json.loads((tmp_path / "data.jsonl.quarantine.jsonl").read_text())["line"] == 2


def test_convert_keeps_every_item_and_writes_problems(mmau_file, tmp_path, capsys):
    out, problems = tmp_path / "mmau.jsonl", tmp_path / "problems.json"
    code, stdout, _ = run(
        capsys,
        "data",
        "convert",
        "--benchmark",
        "mmau",
        "--input",
        str(mmau_file),
        "--output",
        str(out),
        "--problems",
        str(problems),
    )
    assert code == 0
    assert len(out.read_text().splitlines()) == 1000
    assert len(json.loads(problems.read_text())) == 27  # every repeated answer is also a collision
    assert "answer_repeated 16" in stdout and "choices_collide 27" in stdout


def test_allocate_writes_disjoint_splits_with_augmentation(write_jsonl, tmp_path, capsys):
    rows = [
        record_dict(id=f"q{i}", audio_path=f"a/{i}.wav", **{"audio-contribution": "weak" if i < 6 else "strong"})
        for i in range(10)
    ]
    path = write_jsonl(rows)
    out = tmp_path / "alloc"
    code, stdout, _ = run(
        capsys,
        "data",
        "allocate",
        "--input",
        str(path),
        "--paradigm",
        "weak_to_strong",
        "--augment",
        "4",
        "--out-dir",
        str(out),
    )
    assert code == 0
    sft = [json.loads(x) for x in (out / "sft.jsonl").read_text().splitlines()]
    rl = [json.loads(x) for x in (out / "rl.jsonl").read_text().splitlines()]
    assert len(sft) == 24 and len(rl) == 16
    assert {r["augmented_from"] for r in sft}.isdisjoint({r["augmented_from"] for r in rl})
    report = json.loads((out / "allocation.json").read_text())
    assert report["sft"] == {"count": 6, "weak": 6, "strong": 0} and report["written"] == {"sft": 24, "rl": 16}
    assert "weak_to_strong: 6 SFT questions, 4 GRPO questions" in stdout


def test_allocate_refuses_leaking_eval_audio(write_jsonl, mmau_file, tmp_path, capsys):
    leaking = "./test-mini-audios/3fe64f3d-282c-4bc8-a753-68f8f6c35652.wav"
    path = write_jsonl([record_dict(id="x", audio_path=leaking, **{"audio-contribution": "weak"})])
    code, _, err = run(
        capsys,
        "data",
        "allocate",
        "--input",
        str(path),
        "--paradigm",
        "all_sft",
        "--eval",
        "mmau",
        str(mmau_file),
        "--out-dir",
        str(tmp_path / "o"),
    )
    assert code == 1 and "1 audio asset(s)" in err and "3fe64f3d" in err
    assert not (tmp_path / "o").exists()


def test_balance_output_is_in_the_official_format_and_scoreable(mmau_file, tmp_path, capsys):
    out = tmp_path / "mmau-4k.json"
    code, _, _ = run(capsys, "data", "balance", "--benchmark", "mmau", "--input", str(mmau_file), "--output", str(out))
    assert code == 0
    items = json.loads(out.read_text())
    assert len(items) == 3974
    assert set(items[0]) == {
        "id",
        "audio_id",
        "question",
        "choices",
        "answer",
        "dataset",
        "task",
        "split",
        "category",
        "sub-category",
        "difficulty",
        "balanced_from",
        "answer_position",
    }
    for item in items:
        item["model_output"] = item["choices"][0]  # always the first option
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(items))
    code, _, _ = run(
        capsys, "score", "--benchmark", "mmau", "--predictions", str(pred), "--output", str(tmp_path / "m.json")
    )
    total = json.loads((tmp_path / "m.json").read_text())["total"]
    # A first-position bias earns about 1/n per question on the balanced set (ties from repeated answers aside).
    assert 24.0 < total["accuracy"] < 27.0


def test_prompt_command(capsys):
    code, out, _ = run(capsys, "prompt", "What is heard?", "Dog", "Cat")
    assert code == 0
    assert out.splitlines()[1] == (
        "user: What is heard? Please choose the answer from the following options: ['Dog', 'Cat']. "
        "Output the final answer in <answer> </answer>."
    )


def test_parser_builds_without_heavy_imports():
    heavy = "{'torch', 'kfp', 'kubernetes', 'transformers'}"
    code = f"import sys, audiomcq.cli; audiomcq.cli.build_parser(); print(sorted(set(sys.modules) & {heavy}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
    assert build_parser().prog == "audiomcq"


@pytest.mark.parametrize(
    ("setup", "argv_tail", "message"),
    [
        (lambda p: p.write_bytes(b"\xff\xfe[1]"), [], "not UTF-8 text"),
        (lambda p: p.write_text("[" * 100_000), [], "nested too deeply"),
    ],
)
def test_unreadable_inputs_are_one_line(tmp_path, capsys, setup, argv_tail, message):
    path = tmp_path / "pred.json"
    setup(path)
    code, _, err = run(capsys, "score", "--benchmark", "mmau", "--predictions", str(path), *argv_tail)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_unwritable_output_is_one_line(mmau_file, tmp_path, capsys):
    items = json.loads(mmau_file.read_text())[:2]
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(items))
    (tmp_path / "adir").mkdir()
    code, _, err = run(
        capsys, "score", "--benchmark", "mmau", "--predictions", str(pred), "--output", str(tmp_path / "adir")
    )
    assert code == 1 and err.startswith("audiomcq: error: ") and "adir" in err


@pytest.mark.parametrize("flag", [["--rl-size", "-1"], ["--augment", "0"]])
def test_allocate_rejects_bad_sizes(flag, write_jsonl, tmp_path, capsys):
    path = write_jsonl([record_dict(id="a", **{"audio-contribution": "weak"})])
    with pytest.raises(SystemExit) as info:
        main(["data", "allocate", "--input", str(path), "--paradigm", "all_sft", "--out-dir", str(tmp_path), *flag])
    assert info.value.code == 2 and "must be >=" in capsys.readouterr().err


def test_lenient_validate_never_writes_beside_the_input(write_jsonl, tmp_path, capsys, monkeypatch):
    src = tmp_path / "ro"
    src.mkdir()
    path = write_jsonl([record_dict(id="a", answer="x")], name="ro/data.jsonl")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, _, _ = run(capsys, "data", "validate", str(path), "--lenient")
    assert code == 1
    assert sorted(p.name for p in src.iterdir()) == ["data.jsonl"]
    assert (work / "data.jsonl.quarantine.jsonl").is_file()


def test_the_filter_summary_never_prints_none_percent(capsys, tmp_path):
    """A rule with nothing to measure (no text-answerable items: no recall) reads n/a, not ``None%``."""
    from audiomcq.cli.filter import _print

    q = {"agreement": 87.5, "weak_precision": None, "weak_recall": None}
    _print({"weak": 2, "strong": 14, "rule": "paper", "ground_truth": {"paper": q}}, tmp_path)
    out = capsys.readouterr().out
    assert "None" not in out and "paper: agreement 87.5%, weak precision n/a, recall n/a" in out
