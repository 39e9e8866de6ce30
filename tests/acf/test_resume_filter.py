"""``audiomcq filter run`` resumes only work that is still valid: an edited input is answered again where it
changed, a swapped model or a changed chunk size is refused naming the change, an added probe is answered into
the finished parts, and ``--out s3://`` runs never share a work directory."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from audiomcq.cli import main
from audiomcq.data.io import read_records


def _filter(data: Path, root: Path, out: str | Path, *models: Path, probes=("silence:2",), extra=()) -> list[str]:
    return [
        "filter",
        "run",
        "--data",
        str(data),
        "--audio-root",
        str(root),
        "--models",
        *map(str, models),
        "--probes",
        *probes,
        "--min-correct",
        "1",
        "--chunk-size",
        "4",
        "--out",
        str(out),
        *extra,
    ]


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("audiomcq:")]


@pytest.fixture
def data(synth_corpus, tmp_path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join((synth_corpus / "eval.jsonl").read_text().splitlines(keepends=True)[:10]))
    return path


def _stamps(work: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in work.glob("part-*.jsonl")}


def test_an_edited_input_is_answered_again_where_it_changed(tiny_omni, synth_corpus, data, tmp_path):
    out = tmp_path / "out"
    assert main(_filter(data, synth_corpus, out, tiny_omni)) == 0
    before = _stamps(out / "work" / "filter0")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[6]["question"] = "Which of these, if any, can be heard?"  # chunk 1 (records 4..7)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(_filter(data, synth_corpus, out, tiny_omni)) == 0
    after = _stamps(out / "work" / "filter0")
    assert {name for name in before if after[name] != before[name]} == {"part-000001.jsonl"}
    assert main(_filter(data, synth_corpus, tmp_path / "fresh", tiny_omni)) == 0
    assert (out / "labelled.jsonl").read_bytes() == (tmp_path / "fresh" / "labelled.jsonl").read_bytes()


def test_an_answer_that_changes_the_budget_redoes_every_part(tiny_omni, synth_corpus, data, tmp_path):
    out = tmp_path / "out"
    assert main(_filter(data, synth_corpus, out, tiny_omni)) == 0
    before = _stamps(out / "work" / "filter0")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    rows[9]["choices"][-1] = "a much longer option than any other, so the longest answer and the budget grow"
    if rows[9]["answer"] not in rows[9]["choices"]:
        rows[9]["answer"] = rows[9]["choices"][0]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(_filter(data, synth_corpus, out, tiny_omni)) == 0
    after = _stamps(out / "work" / "filter0")
    assert all(after[name] != before[name] for name in before)  # answered under the old budget: none stands
    assert main(_filter(data, synth_corpus, tmp_path / "fresh", tiny_omni)) == 0
    assert (out / "labelled.jsonl").read_bytes() == (tmp_path / "fresh" / "labelled.jsonl").read_bytes()


def test_a_swapped_model_under_the_same_name_is_refused(
    tiny_omni, tiny_qwen2_audio, synth_corpus, data, tmp_path, capsys
):
    out = tmp_path / "out"
    assert main(_filter(data, synth_corpus, out, tiny_omni, tiny_omni)) == 0
    capsys.readouterr()
    assert main(_filter(data, synth_corpus, out, tiny_omni, tiny_qwen2_audio)) == 1
    err = capsys.readouterr().err
    lines = _errors(err)
    assert len(lines) == 1 and "Traceback" not in err
    assert str(out / "work" / "filter1") in lines[0] and "model (" in lines[0] and "--fresh" in lines[0]
    kept = _stamps(out / "work" / "filter0")
    assert main(_filter(data, synth_corpus, out, tiny_omni, tiny_qwen2_audio, extra=["--fresh"])) == 0
    assert _stamps(out / "work" / "filter0") == kept  # the unchanged model's answers stand
    assert main(_filter(data, synth_corpus, tmp_path / "fresh", tiny_omni, tiny_qwen2_audio)) == 0
    assert (out / "labelled.jsonl").read_bytes() == (tmp_path / "fresh" / "labelled.jsonl").read_bytes()


def test_an_added_probe_is_answered_into_the_finished_parts(tiny_omni, synth_corpus, data, tmp_path):
    out = tmp_path / "out"
    assert main(_filter(data, synth_corpus, out, tiny_omni)) == 0
    both = ("silence:2", "mismatch:1")
    assert main(_filter(data, synth_corpus, out, tiny_omni, probes=both)) == 0
    labelled = read_records(out / "labelled.jsonl")
    assert all(set(r.extra["acf"]["models"]["filter0"]) == {"silence:2", "mismatch:1"} for r in labelled)
    assert main(_filter(data, synth_corpus, tmp_path / "fresh", tiny_omni, probes=both)) == 0
    assert (out / "labelled.jsonl").read_bytes() == (tmp_path / "fresh" / "labelled.jsonl").read_bytes()
    assert main(_filter(data, synth_corpus, out, tiny_omni)) == 0  # and dropped again: left out of the labels
    assert all(set(r.extra["acf"]["models"]["filter0"]) == {"silence:2"} for r in read_records(out / "labelled.jsonl"))


def test_a_changed_chunk_size_is_refused_in_one_line(tiny_omni, synth_corpus, data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_filter(data, synth_corpus, out, tiny_omni)) == 0
    capsys.readouterr()
    args = _filter(data, synth_corpus, out, tiny_omni)
    args[args.index("--chunk-size") + 1] = "3"
    assert main(args) == 1
    err = capsys.readouterr().err
    lines = _errors(err)
    assert len(lines) == 1 and "Traceback" not in err and "chunk_size (4 -> 3)" in lines[0]


def test_leftover_temporary_files_of_a_killed_run_are_removed(tiny_omni, synth_corpus, data, tmp_path):
    out = tmp_path / "out"
    assert main(_filter(data, synth_corpus, out, tiny_omni)) == 0
    leftovers = [out / "work" / "filter0" / ".part-000002.jsonl.k1l2.tmp", out / ".labelled.jsonl.m3n4.tmp"]
    for path in leftovers:
        path.write_text("half a file")
    assert main(_filter(data, synth_corpus, out, tiny_omni)) == 0
    assert not any(path.exists() for path in leftovers)


def test_s3_outputs_never_share_a_work_directory(
    s3, tiny_omni, tiny_qwen2_audio, synth_corpus, data, tmp_path, monkeypatch
):
    """Two runs into different S3 outputs without --work, from the same folder: the second publishes its own
    model's labels, not the first run's."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUDIOMCQ_STAGING", str(tmp_path / "staging"))
    assert main(_filter(data, synth_corpus, "s3://data/runs/a", tiny_omni)) == 0
    assert main(_filter(data, synth_corpus, "s3://data/runs/b", tiny_qwen2_audio)) == 0
    assert main(_filter(data, synth_corpus, tmp_path / "local-b", tiny_qwen2_audio)) == 0
    published = s3.get_object("data", "runs/b/labelled.jsonl").read()
    assert published == (tmp_path / "local-b" / "labelled.jsonl").read_bytes()
    assert published != s3.get_object("data", "runs/a/labelled.jsonl").read()


def test_an_s3_input_edited_between_runs_is_answered_again(s3, tiny_omni, synth_corpus, data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUDIOMCQ_STAGING", str(tmp_path / "staging"))
    body = data.read_bytes()
    s3.put_object("data", "in/records.jsonl", io.BytesIO(body), len(body))
    out = tmp_path / "out"
    assert main(_filter("s3://data/in/records.jsonl", synth_corpus, out, tiny_omni)) == 0  # type: ignore[arg-type]
    before = _stamps(out / "work" / "filter0")
    rows = [json.loads(line) for line in body.decode().splitlines()]
    rows[1]["question"] = "Which of these, if any, can be heard?"
    edited = "".join(json.dumps(r) + "\n" for r in rows).encode()
    s3.put_object("data", "in/records.jsonl", io.BytesIO(edited), len(edited))
    assert main(_filter("s3://data/in/records.jsonl", synth_corpus, out, tiny_omni)) == 0  # type: ignore[arg-type]
    after = _stamps(out / "work" / "filter0")
    assert {name for name in before if after[name] != before[name]} == {"part-000000.jsonl"}
    assert read_records(out / "labelled.jsonl")[1].question == rows[1]["question"]
