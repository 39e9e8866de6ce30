"""Generation budgets from the data and the context check, in filtering and evaluation: a long answer is never cut
short by default (an explicit budget still cuts and counts it), the transformers engine stops at a stop string, and a
record too long for a model's context is skipped and named. The server that knows every answer is ``MCQStub`` of
acf/budget_helpers.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from acf.budget_helpers import LONG, SR, MCQStub, _endpoint, _records, _row

from audiomcq.acf import FilterConfig, run_filter
from audiomcq.cli import main
from audiomcq.data.io import read_records
from audiomcq.errors import AudioMCQError
from audiomcq.evaluation import EvalConfig, get_task, run_eval
from audiomcq.jsonio import iter_jsonl, load_json


@pytest.fixture
def knowing():
    """A server that answers every question right, in the AudioMCQ format, long answers included."""
    stub = MCQStub({"What is heard?": f"<answer>{LONG}</answer>", "Which animal?": "<answer>A dog barks</answer>"})
    yield stub
    stub.close()


# --- (a) answers are never cut short -------------------------------------------------------------------------------
def test_filtering_by_default_answers_a_long_answer_in_full_where_16_tokens_cut_it(knowing, tmp_path, capsys):
    data = _records(tmp_path, [_row("long", "What is heard?", LONG)])
    stats = run_filter(
        data, [_endpoint(knowing.url)], tmp_path, tmp_path / "out", FilterConfig(probes=("silence:2",), min_correct=1)
    )
    cell = read_records(tmp_path / "out" / "labelled.jsonl")[0].extra["acf"]["models"]["knows"]["silence:2"]
    assert cell["answers"] == [LONG] and cell["correct"] == [True] and cell["truncated"] == [False]
    assert stats["weak"] == 1 and stats["truncated"] == {"knows": 0}
    budget = stats["budgets"]["knows"]
    assert budget["source"] == "data" and budget["max_new_tokens"] >= len(f"<answer>{LONG}</answer>")
    assert knowing.bodies[-1]["stop"] == ["</answer>"] and knowing.bodies[-1]["max_tokens"] == budget["max_new_tokens"]

    # The old default of 16 new tokens, now only when asked for: the right answer is cut, scored wrong, and counted.
    config = tmp_path / "models.yaml"
    config.write_text(json.dumps([_endpoint(knowing.url)]))  # YAML is a superset of JSON
    assert (
        main(
            [
                "filter",
                "run",
                "--data",
                str(data),
                "--audio-root",
                str(tmp_path),
                "--models-config",
                str(config),
                "--probes",
                "silence:2",
                "--min-correct",
                "1",
                "--max-new-tokens",
                "16",
                "--out",
                str(tmp_path / "cut"),
            ]
        )
        == 0
    )
    assert "knows: 1 answers hit the generation budget (16 tokens)" in capsys.readouterr().out
    cut = load_json(tmp_path / "cut" / "stats.json")
    cell = read_records(tmp_path / "cut" / "labelled.jsonl")[0].extra["acf"]["models"]["knows"]["silence:2"]
    assert cell["outputs"] == [f"<answer>{LONG}"[:16]] and cell["correct"] == [False] and cell["truncated"] == [True]
    assert cut["strong"] == 1 and cut["truncated"] == {"knows": 1}
    assert cut["models"]["knows"]["silence:2"]["truncated"] == 1 and cut["budgets"]["knows"]["source"] == "user"


def test_a_stop_string_the_server_drops_is_put_back(tmp_path):
    stub = MCQStub({"What is heard?": f"<answer>{LONG}</answer> and some trailing talk"}, stop_reason=False)
    try:
        data = _records(tmp_path, [_row("long", "What is heard?", LONG)])
        run_filter(
            data, [_endpoint(stub.url)], tmp_path, tmp_path / "out", FilterConfig(probes=("silence:2",), min_correct=1)
        )
    finally:
        stub.close()
    cell = read_records(tmp_path / "out" / "labelled.jsonl")[0].extra["acf"]["models"]["knows"]["silence:2"]
    assert cell["outputs"] == [f"<answer>{LONG}</answer>"] and cell["answers"] == [LONG]


def test_evaluation_by_default_scores_a_long_answer_right_and_reports_truncations(knowing, tmp_path):
    data = _records(tmp_path, [_row("long", "What is heard?", LONG), _row("dog", "Which animal?", "A dog barks")])
    config = EvalConfig(silent_control=False)
    summary = run_eval(
        _endpoint(knowing.url), {"synthetic": str(data)}, {"synthetic": tmp_path}, tmp_path / "ev", config
    )
    metrics = summary["tasks"]["synthetic"]
    audio = metrics["modes"]["audio"]
    assert audio["total"]["correct"] == 2 and audio["truncated"] == 0 and audio["over_length"] == 0
    assert metrics["budget"]["source"] == "data" and metrics["max_new_tokens"] == metrics["budget"]["max_new_tokens"]
    predictions = [row for _, row in iter_jsonl(tmp_path / "ev" / "synthetic" / "predictions-audio.jsonl")]
    assert predictions[0]["model_output"] == LONG and "truncated" not in predictions[0]
    # an explicit budget still wins: the long answer is cut and counted, in metrics.json and the prediction file
    cut = run_eval(
        _endpoint(knowing.url),
        {"synthetic": str(data)},
        {"synthetic": tmp_path},
        tmp_path / "cut",
        EvalConfig(silent_control=False, max_new_tokens=40),
    )
    audio = cut["tasks"]["synthetic"]["modes"]["audio"]
    assert audio["total"]["correct"] == 1 and audio["truncated"] == 1
    rows = [row for _, row in iter_jsonl(tmp_path / "cut" / "synthetic" / "predictions-audio.jsonl")]
    assert rows[0]["truncated"] is True and "truncated" not in rows[1]
    assert "| 0 | 1 |" in (tmp_path / "cut" / "metrics.md").read_text()


def test_the_budget_holds_the_longest_option_in_the_models_own_tokens(tiny_omni, mmar_file):
    from audiomcq.benchmarks import get_benchmark
    from audiomcq.inference import EngineSpec, make_engine
    from audiomcq.inference.budget import resolve_budget, utf8_bytes

    records = get_benchmark("mmar").load(mmar_file).records
    engine = make_engine(EngineSpec(str(tiny_omni)))
    budget = resolve_budget(None, records, engine, margin=16)
    targets = [f"<answer>{c}</answer>" for r in records for c in r.choices]
    longest = max(engine.count_tokens(targets))
    assert budget.max_new_tokens == longest + 16 and budget.longest_tokens == longest > 16
    endpoint = resolve_budget(None, records, object(), margin=16)  # no local tokenizer: UTF-8 bytes, an upper bound
    assert endpoint.counted_in == "utf8-bytes" and endpoint.longest_tokens == max(utf8_bytes(targets))


# --- the transformers engine: stop strings, truncation flags, the shared-silence prefix ----------------------------
@pytest.mark.parametrize("family", ["tiny_omni", "tiny_qwen2_audio"])
def test_generation_stops_at_a_stop_string_with_or_without_the_shared_prefix(family, request, synth_corpus):
    from audiomcq.inference import EngineSpec, Request, Sampling, make_engine
    from audiomcq.inference.base import is_truncated

    path = str(request.getfixturevalue(family))
    silence = np.zeros(2 * SR, np.float32)
    reqs = [Request(r.question, tuple(r.choices), silence) for r in read_records(synth_corpus / "eval.jsonl")[:6]]
    plain = make_engine(EngineSpec(path, shared_prefix=False, batch_size=8))
    shared = make_engine(EngineSpec(path, batch_size=8))
    free = plain.generate(reqs, Sampling(max_new_tokens=12))
    assert all(is_truncated(o[0]) for o in free)  # a random model never closes in 12 tokens: every row is cut
    # A stop string this model really emits: a printable stretch from the middle of its first answer.
    text = free[0][0]
    start = next(i for i in range(2, len(text) - 3) if text[i : i + 3].isascii() and text[i : i + 3].isprintable())
    stop = text[start : start + 3]
    stopped = plain.generate(reqs, Sampling(max_new_tokens=12, stop=(stop,)))
    # it ends within the token that completes the stop string (which may run on past it), well before the budget
    assert stop in stopped[0][0] and len(stopped[0][0]) < len(text) and not is_truncated(stopped[0][0])
    assert text.startswith(stopped[0][0])  # the same greedy answer, only ended early
    assert shared.generate(reqs, Sampling(max_new_tokens=12, stop=(stop,))) == stopped
    assert len(shared._prefixes) == 1
    assert [[is_truncated(o) for o in x] for x in shared.generate(reqs, Sampling(12, stop=(stop,)))] == [
        [is_truncated(o) for o in x] for x in stopped
    ]


# --- (c) records too long for a model's context --------------------------------------------------------------------
@pytest.mark.parametrize("family", ["omni", "qwen2_audio"])
def test_prompt_tokens_equal_the_processors_expansion(family, tiny_omni, tiny_qwen2_audio):
    from audiomcq.inference.formats import PromptFormat
    from audiomcq.models import load_model
    from audiomcq.models.batch import encode_prompts, prompt_text, prompt_tokens

    processor = load_model(tiny_omni if family == "omni" else tiny_qwen2_audio).processor
    after = PromptFormat("{question}\n{options}", system=None, audio_first=False)
    for fmt in (None, after):
        text = prompt_text(processor, "What is heard?", ["a dog", "rain"], fmt)
        for seconds in (0.1, 0.5, 1.0, 1.01, 2.5, 10.0, 29.99, 30.0, 31.0):
            encoded = encode_prompts(processor, [text], [np.zeros(round(seconds * SR), np.float32)])
            expected = int(encoded["attention_mask"].sum())
            assert prompt_tokens(processor, "What is heard?", ["a dog", "rain"], seconds, fmt) == expected, seconds


def test_filtering_skips_and_names_a_record_too_long_for_the_model(tiny_omni, synth_corpus, tmp_path):
    rows = [json.loads(line) for line in (synth_corpus / "eval.jsonl").read_text().splitlines()[:4]]
    rows[2] = {**rows[2], "id": "wordy", "question": "Which of these best describes the recording? " * 120}
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # The tiny model's own context (2048 positions) is the default limit; the wordy question alone exceeds it.
    stats = run_filter(
        data, [tiny_omni], synth_corpus, tmp_path / "out", FilterConfig(probes=("silence:2",), min_correct=1)
    )
    assert stats["over_length"] == 1 and stats["count"] == 4 and stats["weak"] + stats["strong"] == 3
    report = [row for _, row in iter_jsonl(tmp_path / "out" / "over_length.jsonl")]
    assert [r["id"] for r in report] == ["wordy"]
    assert report[0]["models"]["filter0"]["limit"] == 2048 and report[0]["models"]["filter0"]["tokens"] > 2048
    labelled = {r.id: r for r in read_records(tmp_path / "out" / "labelled.jsonl")}
    assert labelled["wordy"].audio_contribution is None and labelled["wordy"].extra["acf"]["models"]["filter0"] == {}
    sets = [r.id for name in ("weak", "strong") for r in read_records(tmp_path / "out" / f"{name}.jsonl")]
    assert "wordy" not in sets and len(sets) == 3
    # a tighter context from the run's settings, for every model: now every record is too long for 2 s + the prompt
    tight = run_filter(
        data,
        [tiny_omni],
        synth_corpus,
        tmp_path / "tight",
        FilterConfig(probes=("silence:2",), min_correct=1, max_length=100),
    )
    assert tight["over_length"] == 4 and tight["weak"] == tight["strong"] == 0


def test_evaluation_skips_an_item_too_long_for_the_model_and_never_scores_it(tiny_omni, synth_corpus, tmp_path):
    rows = [json.loads(line) for line in (synth_corpus / "eval.jsonl").read_text().splitlines()[:4]]
    sf.write(tmp_path / "long.wav", np.zeros(20 * SR, np.float32), SR)  # 500 audio tokens alone
    rows[1] = {**rows[1], "id": "the-long-one", "audio_path": str(tmp_path / "long.wav")}
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_omni),
                "--data",
                str(data),
                "--audio-root",
                str(synth_corpus),
                "--out",
                str(tmp_path / "ev"),
                "--max-length",
                "400",
            ]
        )
        == 0
    )
    metrics = load_json(tmp_path / "ev" / "synthetic" / "metrics.json")
    for mode in ("audio", "silence"):
        assert metrics["modes"][mode]["over_length"] == 1 and metrics["modes"][mode]["total"]["count"] == 3
    task = tmp_path / "ev" / "synthetic"
    report = [row for _, row in iter_jsonl(task / "over_length.jsonl")]
    assert sorted((r["id"], r["mode"], r["limit"]) for r in report) == [
        ("the-long-one", "audio", 400),
        ("the-long-one", "silence", 400),
    ]
    assert all(r["tokens"] > 400 for r in report)
    skipped = next(r for _, r in iter_jsonl(task / "predictions-audio.jsonl") if r["id"] == "the-long-one")
    assert "model_output" not in skipped and skipped["skipped"] == "over_length"
    assert get_task("synthetic").score(task / "predictions-audio.jsonl")["total"]["count"] == 3


def test_max_length_for_an_endpoint_is_refused_in_one_line(tmp_path, knowing):
    data = _records(tmp_path, [_row("long", "What is heard?", LONG)])
    with pytest.raises(AudioMCQError, match="max_length cannot be honoured for an openai endpoint"):
        run_filter(
            data,
            [_endpoint(knowing.url, max_length=4096)],
            tmp_path,
            tmp_path / "out",
            FilterConfig(probes=("silence:2",), min_correct=1),
        )
