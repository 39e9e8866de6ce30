"""Loading record files: strict errors name file and line; lenient mode quarantines with reasons; writes are atomic."""

from __future__ import annotations

import json

import pytest
from conftest import record_dict

from audiomcq.data.io import RecordReader, read_records, write_records
from audiomcq.data.record import MCQRecord
from audiomcq.errors import RecordError
from audiomcq.jsonio import write_jsonl


def _rows():
    return [
        record_dict(id="ok1"),
        record_dict(id="bad_answer", answer="Truck"),
        '{"id": "broken", "question": ',  # not JSON
        "",  # blank lines are ignored, not counted
        record_dict(id="ok2", extra_field=[1, 2]),
        record_dict(id="ok1"),  # duplicate id
        {"id": "no_choices", "question": "q", "answer": "a"},
    ]


def test_strict_mode_raises_at_the_first_bad_record_with_file_and_line(write_jsonl):
    path = write_jsonl(_rows())
    with pytest.raises(RecordError) as info:
        read_records(path)
    assert str(info.value) == f"{path}:2: answer 'Truck' is not one of the choices"
    assert info.value.line == 2


def test_lenient_mode_quarantines_every_bad_record_with_its_reason(write_jsonl, tmp_path):
    path = write_jsonl(_rows())
    quarantine = tmp_path / "q.jsonl"
    reader = RecordReader(path, strict=False, quarantine=quarantine)
    kept = list(reader)
    assert [r.id for r in kept] == ["ok1", "ok2"]
    assert kept[1].extra == {"extra_field": [1, 2]}
    report = reader.report
    assert (report.read, report.kept, report.quarantined) == (6, 2, 4)
    assert dict(report.reasons) == {
        "answer_not_in_choices": 1,
        "invalid_json": 1,
        "duplicate_id": 1,
        "bad_shape": 1,
    }
    lines = [json.loads(x) for x in quarantine.read_text().splitlines()]
    assert [(q["line"], q["reasons"]) for q in lines] == [
        (2, ["answer_not_in_choices"]),
        (3, ["invalid_json"]),
        (6, ["duplicate_id"]),
        (7, ["bad_shape"]),
    ]
    assert lines[1]["record"] == '{"id": "broken", "question": '
    assert lines[0]["record"]["answer"] == "Truck"
    assert "missing required field(s) choices" in lines[3]["message"]
    assert report.quarantine_path == str(quarantine)
    assert "4 quarantined" in report.summary()


def test_lenient_mode_leaves_no_quarantine_file_when_clean(write_jsonl):
    path = write_jsonl([record_dict(id="a"), record_dict(id="b")])
    reader = RecordReader(path, strict=False)
    assert len(list(reader)) == 2
    assert not reader.quarantine.exists()


def test_missing_audio_is_a_reason_when_a_root_is_given(write_jsonl, tmp_path):
    path = write_jsonl([record_dict(id="a", audio_path="x/a.wav")])
    with pytest.raises(RecordError, match=r":1: audio file not found: .*x/a.wav"):
        read_records(path, audio_root=tmp_path)


def test_records_round_trip_through_files(tmp_path):
    records = [MCQRecord.from_dict(record_dict(id=f"r{i}", note="ü")) for i in range(3)]
    out = tmp_path / "sub" / "out.jsonl"
    assert write_records(out, records) == 3
    assert [r.to_dict() for r in read_records(out)] == [r.to_dict() for r in records]
    assert "ü" in out.read_text(encoding="utf-8")


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    out = tmp_path / "out.jsonl"
    write_jsonl(out, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_jsonl(out, rows())
    assert out.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
