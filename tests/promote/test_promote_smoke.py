"""The smoke check on the new revision: a model that does not hear the audio or answers as well in silence is
rolled back, one that cannot be judged is refused before anything is applied, and the pass mark holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audiomcq.errors import AudioMCQError
from audiomcq.promote.decision import Criteria
from audiomcq.promote.gate import RolledBack, run_gate
from audiomcq.promote.smoke import SmokeSet, SmokeSettings, judge, pass_mark
from promote.promote_helpers import CLIPS, Predictor, gate_config, live, make_run


@pytest.mark.parametrize("mode", ["deaf", "memorised"])
def test_a_model_that_does_not_know_or_does_not_hear_the_audio_is_rolled_back(
    cluster, production, corpus, metrics, mode
):
    """Both answer every question with a choice, which the old check accepted. The deaf one (the same answer
    whatever it hears, like an untrained model) scores 8/32 against an evaluated 87.5%; the memorising one scores
    32/32 but does as well in silence on the audio-dependent items: it is not listening."""
    prod, candidate, before = production
    records = corpus[1]
    served = Predictor(mode, key={r["question"]: r["answer"] for r in records})
    cluster.urls[candidate] = served.url
    with pytest.raises(RolledBack) as err:
        run_gate(candidate, [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    message = str(err.value)
    assert f"restored the previous model {prod}" in message
    not_listening = "silence answers as well as audio, the served model is not listening"
    decision = err.value.outcome.decision
    smoke = decision.smoke
    assert not smoke["ok"] and not decision.promote
    if mode == "deaf":
        assert "accuracy with audio 25.0% (8/32) < pass mark 71.9% (evaluated 87.5% on synthetic" in message
        assert "binomial bound at 0.99" in message and not_listening in message
        assert smoke["numbers"]["listening_accuracy_audio"] == smoke["numbers"]["listening_accuracy_silence"] == 25
    else:
        assert "accuracy with audio" not in message and not_listening in message
        assert "with audio 100.0% (16/16), in silence 100.0% (16/16)" in message
        assert decision.reasons[-2].startswith("ok: smoke: accuracy with audio 100.0% (32/32) >= pass mark 71.9%")
    assert decision.reasons[-1].startswith("FAIL: smoke: on 16 audio-dependent (audio-contribution: strong) items")
    silent = [(n, rate) for _, _, n, rate, quiet in served.seen if quiet]
    assert silent == [(4000, 16000)] * 16  # a silent clip as long as each audio-dependent item's
    after = live(cluster)
    assert after["spec"] == before["spec"] and after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert err.value.outcome.lineage["decision"]["smoke"] == smoke  # what the gate knew, for the caller
    assert not Path(candidate, "lineage.json").exists()


def test_unlabelled_smoke_data_asks_every_question_in_silence(cluster, corpus, metrics, tmp_path):
    """Without audio-contribution labels every question counts as audio-dependent: the listening model is
    promoted (32/32 with audio, 8/32 guessing in silence), the memorising one is rolled back."""
    root, records = corpus
    plain = tmp_path / "plain.jsonl"
    plain.write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "audio-contribution"}) + "\n" for r in records)
    )
    run = make_run(tmp_path, records)
    model = str(run / "grpo" / "final")
    memorised = Predictor("memorised", key={r["question"]: r["answer"] for r in records})
    cluster.urls[model] = memorised.url
    with pytest.raises(
        RolledBack,
        match=r"on 32 \(unlabelled: all\) items: with audio 100.0% \(32/32\), in "
        r"silence 100.0% \(32/32\): silence answers as well as audio",
    ):
        run_gate(model, [str(metrics["better"])], Criteria(), gate_config(root, smoke_data=str(plain)))
    assert live(cluster) is None  # the new service was deleted
    listens = Predictor("listens")
    cluster.urls[model] = listens.url
    outcome = run_gate(model, [str(metrics["better"])], Criteria(), gate_config(root, smoke_data=str(plain)))
    assert outcome.action == "promoted", outcome.message
    numbers = outcome.decision.smoke["numbers"]
    assert (numbers["listening_items"], numbers["listening_accuracy_silence"], numbers["labelled"]) == (32, 25, False)
    assert sum(quiet for *_, quiet in listens.seen) == 32


@pytest.mark.parametrize("case", ["too-few", "too-few-strong", "ambiguous-task"])
def test_a_smoke_check_that_cannot_tell_is_refused_before_anything_is_applied(
    cluster, corpus, metrics, tmp_path, case
):
    """Too few questions, too few audio-dependent ones, or no single evaluated accuracy to expect: one line, and
    the cluster is only read."""
    root, records = corpus
    data = tmp_path / "smoke.jsonl"
    rows = records[:12] if case == "too-few" else records
    if case == "too-few-strong":  # 4 of 32 audio-dependent
        rows = [{**r, "audio-contribution": "strong" if i < 4 else "weak"} for i, r in enumerate(records)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = make_run(tmp_path, records)
    uris = [str(metrics["better"])]
    if case == "ambiguous-task":
        two = tmp_path / "two.json"
        task = json.loads(metrics["better"].read_text())["tasks"]["synthetic"]
        two.write_text(json.dumps({"model": "m", "tasks": {"synthetic": task, "other": task}}))
        uris = [str(two)]
    with pytest.raises(AudioMCQError) as err:
        run_gate(str(run / "grpo" / "final"), uris, Criteria(), gate_config(root, smoke_data=str(data)))
    expected = {
        "too-few": f"smoke set: {data} has 12 records whose audio exists under {root / 'audio'}; the smoke check "
        "needs at least 16 (smoke min size)",
        "too-few-strong": f"smoke set: {data} has 4 records labelled audio-contribution: strong whose audio exists "
        f"under {root / 'audio'}; the silence check needs at least 8 (smoke min listening)",
        "ambiguous-task": "smoke check: the candidate is evaluated on other, synthetic; name the task evaluated on "
        "the smoke data's kind of data (smoke task)",
    }
    assert str(err.value) == expected[case]
    assert [m for m, _ in cluster.requests] == ["GET"] and live(cluster) is None
    if case == "ambiguous-task":  # naming the task settles it
        cluster.urls[str(run / "grpo" / "final")] = Predictor("listens").url
        cfg = gate_config(root, smoke_data=str(data), smoke=SmokeSettings(task="other"))
        assert run_gate(str(run / "grpo" / "final"), uris, Criteria(), cfg).action == "promoted"


def test_the_pass_mark_lets_a_model_at_its_evaluated_accuracy_pass_as_often_as_asked():
    """Checked against simulated smoke checks (numpy's binomial sampler), not the formula itself: a model at its
    evaluated accuracy passes at least ``confidence`` of the time, and one more right answer would be too many."""
    rng = np.random.default_rng(0)
    for n, accuracy, confidence in ((32, 87.5, 0.99), (32, 70.0, 0.99), (16, 62.5, 0.95), (64, 50.0, 0.99)):
        mark = pass_mark(accuracy, n, confidence)
        draws = rng.binomial(n, accuracy / 100, size=400_000)
        assert (draws >= mark).mean() >= confidence - 0.001, (n, accuracy, mark)
        assert (draws >= mark + 1).mean() < confidence, (n, accuracy, mark)
    assert pass_mark(100.0, 32, 0.99) == 32 and pass_mark(0.0, 32, 0.99) == 0


def test_the_smoke_judgement_at_the_pass_mark_and_with_a_fixed_tolerance():
    """23 of 32 right passes against an evaluated 87.5% (the 99% binomial mark), 22 does not; a fixed tolerance of
    20 points moves the mark to 68.75% (22 of 32)."""
    smoke_set = SmokeSet([], "held-out.jsonl", labelled=True)

    def rows(right: int) -> list[dict]:
        return [{"scored": True, "listening": i < 8, "right": i < right, "silence_right": i < 2} for i in range(32)]

    auto = SmokeSettings()
    assert judge(rows(23), 87.5, "t", auto, "http://x", smoke_set).ok
    failed = judge(rows(22), 87.5, "t", auto, "http://x", smoke_set)
    assert not failed.ok and failed.numbers["pass_mark"] == 71.875 and failed.numbers["accuracy"] == 68.75
    assert failed.reasons[0].startswith("FAIL: accuracy with audio 68.8% (22/32) < pass mark 71.9%")
    fixed = judge(rows(22), 87.5, "t", SmokeSettings(tolerance=20), "http://x", smoke_set)
    assert fixed.ok and fixed.numbers["pass_mark"] == 68.75 and fixed.numbers["tolerance_source"] == "fixed"
    with pytest.raises(AudioMCQError, match="min size 40 must be between 1 and the size 32"):
        SmokeSettings(min_size=40)


@pytest.mark.slow
def test_the_random_tiny_model_behind_the_real_predictor_is_rolled_back(cluster, corpus, metrics, tiny_omni, tmp_path):
    """`audiomcq serve` on the random tiny Omni model behind the new revision, with metrics that say 87.5%: it
    answers every question with one of the choices (the request format is the predictor's), which the old check
    took for a pass, and far fewer of them right than its evaluation promised, so the new service is deleted."""
    from audiomcq.bench.serve import running_server

    run = make_run(tmp_path, corpus[1])
    model = str(run / "grpo" / "final")
    with running_server(tiny_omni, log_path=tmp_path / "serve.log") as base:
        cluster.urls[model] = base
        with pytest.raises(RolledBack) as err:
            run_gate(model, [str(metrics["better"])], Criteria(), gate_config(corpus[0], timeout=30))
    log = (tmp_path / "serve.log").read_text()[-2000:]
    smoke = err.value.outcome.decision.smoke
    assert smoke is not None and len(smoke["answers"]) == CLIPS, (str(err.value), log)  # every question answered
    assert all("silence_answer" in row for row in smoke["answers"] if row["listening"])
    assert smoke["numbers"]["right"] < 23 and "< pass mark 71.9%" in str(err.value), log
    assert "deleted the new InferenceService serving/audiomcq" in str(err.value) and live(cluster) is None
