"""Failures a hostile but realistic user meets end as one line naming the file, record or URL and the reason (exit
1), never a traceback or a silent empty result: a 1 MB question, an unreachable S3 store, a line that is not UTF-8,
a zero chunk size, a malformed shard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import free_port

from audiomcq.cli import main
from audiomcq.jsonio import iter_json_items, load_json


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("audiomcq:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def huge(synth_corpus, tmp_path) -> Path:
    """Four records; the second asks a 1 MB question."""
    rows = [json.loads(line) for line in (synth_corpus / "eval.jsonl").read_text().splitlines()[:4]]
    rows[1]["question"] = "What is this? " * 75_000
    path = tmp_path / "huge.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_huge_question_stops_filtering_in_one_line_naming_its_line(tiny_omni, synth_corpus, huge, tmp_path, capsys):
    code = main(
        [
            "filter",
            "run",
            "--data",
            str(huge),
            "--audio-root",
            str(synth_corpus),
            "--models",
            str(tiny_omni),
            "--probes",
            "silence:2",
            "--min-correct",
            "1",
            "--max-length",
            "100000000",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    line = _one_line(capsys)
    assert code == 1 and f"{huge}:2:" in line and "characters, more than the 16,384 allowed" in line


def test_a_huge_question_is_counted_over_length_in_evaluation_never_asked(tiny_omni, synth_corpus, huge, tmp_path):
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_omni),
                "--data",
                str(huge),
                "--audio-root",
                str(synth_corpus),
                "--out",
                str(out),
                "--max-length",
                "100000000",
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    audio = load_json(out / "synthetic" / "metrics.json")["modes"]["audio"]
    assert audio["over_length"] == 1 and audio["answered"] == 3
    skipped = [row for _, row in iter_json_items(out / "synthetic" / "over_length.jsonl")]
    assert skipped[0]["chars"] > 1_000_000 and skipped[0]["limit"] == 16_384


@pytest.fixture
def unreachable(monkeypatch) -> str:
    """An S3 endpoint on 127.0.0.1 where nothing listens."""
    endpoint = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("AUDIOMCQ_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("AUDIOMCQ_S3_SECURE", "false")
    monkeypatch.setenv("AUDIOMCQ_S3_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return endpoint


def test_an_unreachable_s3_store_is_one_line_naming_the_uri(unreachable, synth_corpus, tiny_omni, tmp_path, capsys):
    code = main(
        [
            "eval",
            "--model",
            "s3://models/tiny",
            "--data",
            str(synth_corpus / "eval.jsonl"),
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    line = _one_line(capsys)
    assert code == 1 and "s3://models/tiny" in line and f"{unreachable} cannot be reached" in line
    code = main(
        [
            "filter",
            "run",
            "--data",
            str(synth_corpus / "eval.jsonl"),
            "--audio-root",
            "s3://data/audio",
            "--models",
            str(tiny_omni),
            "--out",
            str(tmp_path / "filter"),
        ]
    )
    line = _one_line(capsys)
    assert code == 1 and "s3://data/audio" in line and "cannot be reached" in line


def test_a_line_that_is_not_utf8_is_named_by_its_line(write_jsonl, tmp_path, capsys):
    from conftest import record_dict

    path = write_jsonl([record_dict(id="a"), record_dict(id="b"), record_dict(id="c")])
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"Engine", b"Eng\xffine", 1)
    path.write_bytes(b"".join(lines))
    assert main(["data", "validate", str(path)]) == 1
    line = _one_line(capsys)
    assert f"{path}:2: not UTF-8 text" in line
    quarantine = tmp_path / "q.jsonl"
    assert main(["data", "validate", str(path), "--lenient", "--quarantine", str(quarantine)]) == 1
    bad = [row for _, row in iter_json_items(quarantine)]
    assert [(b["line"], b["reasons"]) for b in bad] == [(2, ["invalid_json"])]
    assert "2 valid, 1 quarantined" in capsys.readouterr().out


def test_a_zero_chunk_size_is_refused_not_an_empty_result(tiny_omni, synth_corpus, tmp_path, capsys):
    code = main(
        [
            "filter",
            "run",
            "--data",
            str(synth_corpus / "eval.jsonl"),
            "--audio-root",
            str(synth_corpus),
            "--models",
            str(tiny_omni),
            "--chunk-size",
            "0",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 1 and "chunk_size must be a whole number >= 1" in _one_line(capsys)
    assert not (tmp_path / "out" / "labelled.jsonl").exists()


def test_a_malformed_shard_is_a_usage_error(tiny_omni, synth_corpus, tmp_path, capsys):
    """--shard is checked as the command line is parsed, the same way by every command that takes it."""
    for command in (["eval", "--model", str(tiny_omni)], ["filter", "run", "--models", str(tiny_omni)]):
        for shard in ("one/two", "3/2", "-1/2"):
            with pytest.raises(SystemExit) as info:
                main(
                    [
                        *command,
                        "--data",
                        str(synth_corpus / "eval.jsonl"),
                        "--out",
                        str(tmp_path / "o"),
                        f"--shard={shard}",
                    ]
                )
            err = capsys.readouterr().err  # argparse's usage, then its one error line
            assert info.value.code == 2 and "Traceback" not in err
            assert "--shard must look like i/N with 0 <= i < N" in err.splitlines()[-1]
    assert not (tmp_path / "o").exists()


def test_a_command_missing_what_it_needs_is_a_usage_error(tmp_path, capsys):
    """Arguments that cannot work together exit 2 with one line, like argparse's own usage errors."""
    assert main(["report", "--out", str(tmp_path / "r")]) == 2
    assert "nothing to report: give --run, --eval or --demo" in _one_line(capsys)
    assert main(["report", "--run", f"a={tmp_path}", "--out", str(tmp_path / "r")]) == 2
    assert "--run needs --audio-root" in _one_line(capsys)
    assert main(["select", "--run", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    assert "--run needs --audio-root" in _one_line(capsys)
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pipeline", "run", "bogus", "--local"], "unknown pipeline 'bogus'; the pipelines are audiomcq-demo"),
        (["pipeline", "run", "audiomcq-filter", "--name", "audiomcq-demo", "--local"], "two pipelines named"),
        (["pipeline", "run", "audiomcq-demo", "--local", "--param", "foo=1"], "takes no parameter(s) ['foo']"),
        (["pipeline", "run", "audiomcq-filter", "--local", "--recipe", "demo"], "takes no parameter(s) ['recipe']"),
        (["pipeline", "run", "audiomcq-demo", "--local", "--param", "foo"], "--param 'foo': expected KEY=JSON"),
        (["pipeline", "compile", "audiomcq-demo"], "compiles every pipeline and takes no a pipeline name"),
        (["pipeline", "compile", "--param", "a=1"], "takes no --param"),
        (["pipeline", "run", "audiomcq-demo", "--local", "--images", "b.json"], "`pipeline run` takes no --images"),
        (["pipeline", "submit", "audiomcq-demo", "--local"], "`pipeline submit` takes no --local"),
        (["score", "--benchmark", "mmau", "--mode", "text", "--predictions", "p.json"], "--mode is for mmsu only"),
        (["generate", "--source", "Clotho", "--out", "g"], "--source 'Clotho': expected NAME=PATH"),
    ],
)
def test_arguments_that_cannot_be_honoured_are_refused_before_anything_runs(argv, message, tmp_path, capsys):
    """Options a command would ignore or misread exit 2 with one line naming them, and write nothing."""
    argv = [*argv, "--out", str(tmp_path / "out")] if "--out" not in argv else argv
    assert main(argv) == 2
    assert message in _one_line(capsys)
    assert not (tmp_path / "out").exists()


def test_counts_and_outputs_are_checked_where_they_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["synth", "--out", str(tmp_path / "s"), "--n", "-1"])
    assert info.value.code == 2 and "--n: must be >= 1, got -1" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "unterminated\n')
    assert main(["data", "validate", str(bad)]) == 1
    assert "not valid JSON (Unterminated string starting at column 14)" in _one_line(capsys)
    from audiomcq.errors import AudioMCQError
    from audiomcq.jsonio import write_json

    with pytest.raises(AudioMCQError, match="is a folder, expected a file to write"):  # not the temporary file
        write_json(tmp_path, {"a": 1})
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.*"))
