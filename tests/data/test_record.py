"""The MCQ record: round-trip of known and unknown fields, and each validation rule."""

from __future__ import annotations

import pytest
from conftest import record_dict

from audiomcq.data.record import MCQRecord, colliding_choices, normalize_choice, validate


def test_round_trip_keeps_every_field_including_unknown_ones():
    raw = record_dict(grading={"answer_consistency": 5}, license="cc-by", thinking=None)
    rec = MCQRecord.from_dict(raw)
    assert rec.audio_contribution == "strong"
    assert rec.extra == {"grading": {"answer_consistency": 5}, "license": "cc-by", "thinking": None}
    assert rec.to_dict() == raw


def test_minimal_record_writes_only_what_it_has():
    rec = MCQRecord.from_dict({"id": 7, "question": "Q?", "choices": ["a", "b"], "answer": "a"})
    assert rec.id == "7"
    assert rec.to_dict() == {"id": "7", "question": "Q?", "choices": ["a", "b"], "answer": "a"}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"question": "q", "choices": ["a", "b"], "answer": "a"}, "missing required field(s) id"),
        ({"id": "x", "question": "q", "choices": "a,b", "answer": "a"}, "'choices' must be a list of strings"),
        ({"id": "x", "question": "q", "choices": ["a", 2], "answer": "a"}, "'choices' must be a list of strings"),
        ({"id": "x", "question": "q", "choices": ["a", "b"], "answer": 0}, "'answer' must be a string"),
        ({"id": "", "question": "q", "choices": ["a", "b"], "answer": "a"}, "'id' must be a non-empty"),
        ({"id": "x", "question": "q", "choices": ["a", "b"], "answer": "a", "audio_path": 3}, "'audio_path'"),
        (["not", "an", "object"], "expected a JSON object"),
    ],
)
def test_bad_shapes_name_the_field(raw, fragment):
    with pytest.raises(ValueError, match=None) as info:
        MCQRecord.from_dict(raw)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "codes"),
    [
        ({}, []),
        ({"question": "   "}, ["empty_question"]),
        ({"choices": ["Only one"], "answer": "Only one"}, ["too_few_choices"]),
        ({"answer": "Truck"}, ["answer_not_in_choices"]),
        ({"answer": ""}, ["no_answer"]),
        ({"choices": ["Dog", "Cat", "Dog"], "answer": "Dog"}, ["answer_repeated", "choices_collide"]),
        ({"choices": ["Dog barking", "dog  barking!", "Cat"], "answer": "Cat"}, ["choices_collide"]),
        ({"choices": ["Dog", "", "Cat"], "answer": "Cat"}, ["empty_choice"]),
        ({"audio-contribution": "medium"}, ["bad_audio_contribution"]),
        # Case differs from the choice: the answer must be the choice text exactly.
        ({"answer": "engine revving repeatedly"}, ["answer_not_in_choices"]),
    ],
)
def test_validation_rules(overrides, codes):
    rec = MCQRecord.from_dict(record_dict(**overrides))
    assert [p.code for p in validate(rec)] == codes


def test_audio_is_checked_only_when_a_root_is_given(tmp_path):
    rec = MCQRecord.from_dict(record_dict(audio_path="clips/a.wav"))
    assert validate(rec) == []
    assert [p.code for p in validate(rec, audio_root=tmp_path)] == ["audio_missing"]
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.wav").write_bytes(b"")
    assert [p.code for p in validate(rec, audio_root=tmp_path)] == ["audio_empty"]
    (tmp_path / "clips" / "a.wav").write_bytes(b"RIFF")
    assert validate(rec, audio_root=tmp_path) == []
    no_path = MCQRecord.from_dict(record_dict(audio_path=None))
    assert [p.code for p in validate(no_path, audio_root=tmp_path)] == ["no_audio_path"]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Dog barking", "dog barking", True),
        ("Dog  barking ", "Dog barking", True),
        ("Dog, barking.", "Dog barking", True),
        ("Ｄｏｇ", "dog", True),  # full-width letters (NFKC)
        ("Straße", "STRASSE", True),  # case folding
        ("21.2s", "212s", False),  # punctuation becomes a space, so digits do not merge
        ("Dog", "Dogs", False),
    ],
)
def test_normalisation(a, b, same):
    assert (normalize_choice(a) == normalize_choice(b)) is same


def test_colliding_groups_are_reported_in_order():
    assert colliding_choices(["A b", "c", "a-b", "C!", "d"]) == [["A b", "a-b"], ["c", "C!"]]
