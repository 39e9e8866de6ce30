"""Scoring whole prediction files: official totals, strict totals, breakdowns and per-item verdicts."""

from __future__ import annotations

import json

import pytest

from audiomcq.benchmarks import get_benchmark
from audiomcq.errors import RecordError


def _mmau_item(i, prediction=None, key="model_output", **extra):
    item = {
        "id": f"q{i}",
        "audio_id": f"./test-mini-audios/q{i}.wav",
        "question": "Who is speaking?",
        "choices": ["Man", "Woman", "Child", "Robot"],
        "answer": "Man",
        "task": "sound" if i % 2 else "speech",
        "difficulty": "easy",
        "category": ["Reasoning"] if i == 0 else "Reasoning",
        "sub-category": "Speaker",
        **extra,
    }
    if prediction is not None:
        item[key] = prediction
    return item


def test_mmau_file_official_and_strict(tmp_path):
    items = [
        _mmau_item(0, "man."),
        _mmau_item(1, "A"),
        _mmau_item(2, "Man", key="model_prediction"),  # older key still read
        _mmau_item(3),  # no prediction: the official script skips it
        _mmau_item(4, "Woman", model_prediction="Man"),  # model_output wins over model_prediction
        _mmau_item(5, None, key="model_output", model_output=None),  # null: empty prediction, wrong
    ]
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(items))
    result = get_benchmark("mmau").score(path)
    assert result["total"] == {"accuracy": 40.0, "correct": 2, "count": 5, "unparsed": 0, "missing": 1}
    assert result["strict"] == {"accuracy": pytest.approx(100 * 2 / 6), "correct": 2, "count": 6}
    assert result["items"] == [
        {"id": "q0", "correct": True},
        {"id": "q1", "correct": False},
        {"id": "q2", "correct": True},
        {"id": "q3", "correct": None, "status": "missing"},
        {"id": "q4", "correct": False},
        {"id": "q5", "correct": False},
    ]
    assert result["breakdown"]["task"] == {
        "sound": {"accuracy": 0.0, "correct": 0, "count": 2},  # q1, q5 (q3 skipped)
        "speech": {"accuracy": pytest.approx(200 / 3), "correct": 2, "count": 3},
    }
    # The list-valued category of the real file groups with the string one.
    assert result["breakdown"]["category"] == {"Reasoning": {"accuracy": 40.0, "correct": 2, "count": 5}}
    assert set(result["breakdown"]) == {"task", "difficulty", "category", "sub-category"}


def test_extract_answer_option(tmp_path):
    path = tmp_path / "pred.json"
    path.write_text(json.dumps([_mmau_item(0, "<answer>A</answer> Man")]))
    assert get_benchmark("mmau").score(path)["total"]["correct"] == 1  # raw: words {answer, a, man}
    assert get_benchmark("mmau").score(path, extract=True)["total"]["correct"] == 0  # extracted: "A"


def test_real_mmau_answer_texts_score_100(mmau_file, tmp_path):
    items = json.loads(mmau_file.read_text())
    for item in items:
        item["model_output"] = item["answer"]
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(items))
    assert get_benchmark("mmau").score(path)["total"]["accuracy"] == 100.0


def test_mmar_keys(mmar_file, tmp_path):
    rows = [json.loads(x) for x in mmar_file.read_text().splitlines()[:3]]
    rows[0]["answer_prediction"] = rows[0]["answer"]
    rows[1]["model_prediction"] = rows[1]["answer"]
    rows[2]["answer_prediction"] = ""
    path = tmp_path / "pred.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    result = get_benchmark("mmar").score(path)
    assert [i["correct"] for i in result["items"]] == [True, True, False]
    assert set(result["breakdown"]) == {"modality", "category", "sub-category"}


def _mmsu_predictions(mmsu_file, tmp_path, responses):
    rows = [json.loads(x) for x in mmsu_file.read_text().splitlines()]
    for row, response in zip(rows, responses, strict=True):
        if response is not None:
            row["response"] = response
    path = tmp_path / "mmsu_pred.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_mmsu_letter_mode_reports_official_and_strict(mmsu_file, tmp_path):
    # 0001 Sad=B ok; 0002 "The answer is A." -> A=Question ok; 0003 unparsable; 0004 empty -> wrong;
    # 0005 C=Cook dinner ok; 0006 'None' -> wrong.
    path = _mmsu_predictions(mmsu_file, tmp_path, ["B", "The answer is A.", "second", "", "C", "None"])
    result = get_benchmark("mmsu").score(path)
    assert result["total"] == {"accuracy": 60.0, "correct": 3, "count": 5, "unparsed": 1, "missing": 0}
    assert result["strict"] == {"accuracy": 50.0, "correct": 3, "count": 6}
    assert result["items"][2] == {"id": "mmsu_0003", "correct": None, "status": "unparsed"}
    assert result["breakdown"]["category"] == {
        "perception": {"accuracy": pytest.approx(200 / 3), "correct": 2, "count": 3},
        "reasoning": {"accuracy": 50.0, "correct": 1, "count": 2},
    }
    assert result["breakdown"]["category/sub-category"]["reasoning/semantics"]["count"] == 2


def test_mmsu_missing_response_counts_wrong(mmsu_file, tmp_path):
    path = _mmsu_predictions(mmsu_file, tmp_path, ["B", None, None, None, None, None])
    result = get_benchmark("mmsu").score(path)
    assert result["total"]["count"] == 6 and result["total"]["missing"] == 5 and result["total"]["correct"] == 1


def test_mmsu_text_mode_matches_choice_text(mmsu_file, tmp_path):
    path = _mmsu_predictions(
        mmsu_file, tmp_path, ["Sad", "B", "<answer>Second</answer>", "Female", "cook dinner", "x"]
    )
    result = get_benchmark("mmsu", mode="text").score(path)
    assert [i["correct"] for i in result["items"]] == [True, False, True, True, True, False]


def test_hidden_answers_cannot_be_scored(tmp_path):
    item = _mmau_item(0, "Man")
    del item["answer"]
    path = tmp_path / "test.json"
    path.write_text(json.dumps([item]))
    with pytest.raises(RecordError, match=r"no answer .*official server"):
        get_benchmark("mmau").score(path)


def test_mmsu_none_is_compared_after_stripping_and_null_is_left_out(mmsu_file, tmp_path):
    path = _mmsu_predictions(mmsu_file, tmp_path, [" None \n", "\nNone", "B", "B", "C", "A"])
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[3]["response"] = None
    path.write_text("\n".join(json.dumps(r) for r in rows))
    result = get_benchmark("mmsu").score(path)
    assert [i["correct"] for i in result["items"]] == [False, False, True, None, True, True]
    assert result["total"]["unparsed"] == 1


def test_non_string_predictions_are_an_error_not_an_answer(tmp_path):
    path = tmp_path / "pred.json"
    path.write_text(json.dumps([_mmau_item(0, ["Man"])]))
    with pytest.raises(RecordError, match=r"pred.json:1: prediction 'model_output' must be a string or null"):
        get_benchmark("mmau").score(path)
