"""Per-model prompt formats: a model's own prompt, system message and option style reach an endpoint verbatim and
its letter answer maps back to the choice, in filtering and from the ``eval`` CLI; the AudioMCQ prompt still wants the
answer's text, not a bare letter; a template that cannot be rendered is refused in one line. The answering server is
``MCQStub`` of acf/budget_helpers.py."""

from __future__ import annotations

import json

import pytest
from acf.budget_helpers import CHOICES, LONG, MCQStub, _endpoint, _records, _row

from audiomcq.acf import FilterConfig, run_filter
from audiomcq.cli import main
from audiomcq.data.io import read_records
from audiomcq.errors import AudioMCQError
from audiomcq.jsonio import iter_jsonl, load_json
from audiomcq.scoring import string_match

# --- (b) per-model prompt formats ----------------------------------------------------------------------------------
KIMI_STYLE = {
    "prompt": "{question}\n{options}",
    "option": "({letter}) {choice}",
    "option_sep": " ",
    "system": "Answer with the option's letter.",
    "audio_first": False,
}


def test_a_models_own_prompt_reaches_the_endpoint_verbatim_and_its_letter_maps_back(tmp_path, tiny_omni):
    stub = MCQStub({"What is heard?": "(A)", "Which animal?": "The answer is C."})
    try:
        data = _records(tmp_path, [_row("long", "What is heard?", LONG), _row("dog", "Which animal?", "A dog barks")])
        models = [_endpoint(stub.url, "kimi", **KIMI_STYLE), {"path": str(tiny_omni), "name": "ours"}]
        stats = run_filter(
            data, models, tmp_path, tmp_path / "out", FilterConfig(probes=("silence:2",), min_correct=1)
        )
    finally:
        stub.close()
    body = next(b for b in stub.bodies if "What is heard?" in b["messages"][1]["content"][0]["text"])  # concurrent
    assert body["messages"][0] == {"role": "system", "content": "Answer with the option's letter."}
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "input_audio"]  # the text first, as this model was trained
    options = f"(A) {LONG} (B) A woman sings (C) A dog barks (D) Rain falls on a tin roof"
    assert parts[0]["text"] == f"What is heard?\n{options}"
    assert "stop" not in body  # no <answer> tag asked for, so none to stop at
    cells = [r.extra["acf"]["models"]["kimi"]["silence:2"] for r in read_records(tmp_path / "out" / "labelled.jsonl")]
    assert [c["answers"] for c in cells] == [[LONG], ["A dog barks"]]
    assert [c["correct"] for c in cells] == [[True], [True]] and stats["weak"] == 2
    assert stats["models"]["kimi"]["silence:2"]["unparsed"] == 0


def test_an_evaluated_endpoint_is_asked_its_own_way_from_the_cli(tmp_path):
    stub = MCQStub({"What is heard?": "A", "Which animal?": "B"})  # the second one is wrong
    config = tmp_path / "kimi.yaml"
    config.write_text(json.dumps(_endpoint(stub.url, "kimi", **KIMI_STYLE)))  # YAML is a superset of JSON
    data = _records(tmp_path, [_row("long", "What is heard?", LONG), _row("dog", "Which animal?", "A dog barks")])
    try:
        assert (
            main(
                [
                    "eval",
                    "--model-config",
                    str(config),
                    "--data",
                    str(data),
                    "--audio-root",
                    str(tmp_path),
                    "--out",
                    str(tmp_path / "ev"),
                    "--no-silence",
                ]
            )
            == 0
        )
    finally:
        stub.close()
    rows = [row for _, row in iter_jsonl(tmp_path / "ev" / "synthetic" / "predictions-audio.jsonl")]
    assert [(r["model_output"], r["raw_output"]) for r in rows] == [(LONG, "A"), ("A woman sings", "B")]
    assert [string_match(r["answer"], r["model_output"], r["choices"]) for r in rows] == [True, False]
    assert load_json(tmp_path / "ev" / "metrics.json")["model"] == "kimi"


def test_a_bare_letter_is_still_no_answer_for_the_audiomcq_prompt():
    from audiomcq.inference.formats import DEFAULT, PromptFormat

    assert DEFAULT.answer("A", CHOICES) is None and not string_match(LONG, DEFAULT.prediction("A", CHOICES), CHOICES)
    lettered = PromptFormat("{question}\n{choices_lines}\nAnswer with the letter.", system=None)
    assert lettered.user_text("Q?", ["x", "y"]) == "Q?\nA. x\nB. y\nAnswer with the letter."
    for said, meant in (
        ("B", "A woman sings"),
        ("(C) A dog barks", "A dog barks"),
        ("answer: D", CHOICES[3]),
        ("A dog barks", "A dog barks"),
        ("The answer is A.", LONG),
    ):
        assert lettered.answer(said, CHOICES) == meant, said
    assert lettered.answer("E", CHOICES) is None and lettered.answer("no idea", CHOICES) is None


def test_a_prompt_template_that_cannot_be_rendered_is_refused_in_one_line():
    from audiomcq.inference import EngineSpec

    with pytest.raises(AudioMCQError, match=r"unknown placeholder\(s\) \['choice_list'\]"):
        EngineSpec.from_dict({"path": "m", "prompt": "{question} {choice_list}"})
    with pytest.raises(AudioMCQError, match="must show"):
        EngineSpec.from_dict({"path": "m", "prompt": "{question} pick one"})
    assert EngineSpec.from_dict({"path": "m", "system": None}).format.system is None  # an explicit null: none
