"""The shared pass in-process: choice scores from one prefill's cache equal the full-forward reference for both model
families, greedy replies equal transformers' generate, and every decoding setting does what it says."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

pytest.importorskip("kserve")

FAMILIES = ["tiny_omni", "tiny_qwen2_audio"]


@pytest.fixture(scope="module")
def items(synth_corpus):
    """Three questions with 2, 3 and 4 choices (so batches mix lengths and padding)."""
    from audiomcq.synth.audio import read_wav

    rows = [json.loads(line) for line in (synth_corpus / "eval.jsonl").read_text().splitlines()[:3]]
    return [
        (r["question"], r["choices"][: 2 + i], read_wav(synth_corpus / r["audio_path"])) for i, r in enumerate(rows)
    ]


def _jobs(processor, items, params):
    from audiomcq.models.batch import prompt_text
    from audiomcq.serve.shared_pass import Job

    return [Job(prompt_text(processor, q, c), [w], params, tuple(c)) for q, c, w in items]


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_from_one_prefill_equal_the_full_forward_and_replies_equal_generate(family, request, items):
    from audiomcq.models import load_model
    from audiomcq.models.batch import generate_batch
    from audiomcq.serve.sampling import GenParams
    from audiomcq.serve.scoring import choice_scores
    from audiomcq.serve.shared_pass import run_jobs

    loaded = load_model(request.getfixturevalue(family))
    reference = choice_scores(loaded.model, loaded.processor, items, rows=4)
    replies = generate_batch(loaded.model, loaded.processor, items, 12)
    results = run_jobs(loaded.model, loaded.processor, _jobs(loaded.processor, items, GenParams(12)), 2048)
    for (q, c, w), ref, reply, result in zip(items, reference, replies, results, strict=True):
        np.testing.assert_allclose(result.scores, ref, atol=1e-4)
        assert len(result.scores) == len(c)
        (sample,) = result.samples
        assert sample.text == reply and len(sample.token_ids) <= 12
        alone = loaded.processor(
            text=[_jobs(loaded.processor, [(q, c, w)], GenParams(1))[0].text],
            audio=[w],
            sampling_rate=16000,
            return_tensors="pt",
        )
        assert result.prompt_tokens == alone["input_ids"].shape[1]  # padding is not counted


def test_one_pass_encodes_each_clip_once(tiny_omni, items):
    """The shared pass encodes each question's clip once; the reference path once more for every choice."""
    from audiomcq.models import load_model
    from audiomcq.serve.sampling import GenParams
    from audiomcq.serve.scoring import choice_scores
    from audiomcq.serve.shared_pass import run_jobs

    loaded = load_model(tiny_omni)
    clips = []

    def count(module, args, kwargs, out):
        if kwargs.get("input_features") is not None:
            clips.append(kwargs["input_features"].shape[0])

    hook = loaded.model.model.register_forward_hook(count, with_kwargs=True)
    try:
        run_jobs(loaded.model, loaded.processor, _jobs(loaded.processor, items, GenParams(4)), 2048)
        shared = sum(clips)
        clips.clear()
        choice_scores(loaded.model, loaded.processor, items)
    finally:
        hook.remove()
    assert shared == len(items) == 3
    assert sum(clips) == sum(len(c) for _, c, _ in items) == 9


@pytest.fixture(scope="module")
def omni(tiny_omni):
    from audiomcq.models import load_model

    return load_model(tiny_omni)


def _one(omni, items, **settings):
    from audiomcq.serve.sampling import GenParams
    from audiomcq.serve.shared_pass import run_jobs

    job = _jobs(omni.processor, items[:1], GenParams(**{"max_tokens": 8, **settings}))[0]
    job.choices = ()
    (result,) = run_jobs(omni.model, omni.processor, [job], 2048)
    return result


def test_sampling_settings_do_what_they_say(omni, items):
    greedy = _one(omni, items)
    assert _one(omni, items).samples[0].token_ids == greedy.samples[0].token_ids
    hot = [_one(omni, items, temperature=2.0, seed=s).samples[0].token_ids for s in (1, 2, 1)]
    assert hot[0] == hot[2] and hot[0] != hot[1]  # a seed repeats its sample; another seed samples otherwise
    assert _one(omni, items, temperature=2.0, top_p=1e-6, seed=5).samples[0].token_ids == greedy.samples[0].token_ids
    assert _one(omni, items, temperature=2.0, top_k=1, seed=5).samples[0].token_ids == greedy.samples[0].token_ids
    two = _one(omni, items, temperature=1.0, n=2, seed=9)
    assert len(two.samples) == 2 and two.samples[0].token_ids != two.samples[1].token_ids
    short = _one(omni, items, max_tokens=3)
    assert short.samples[0].token_ids == greedy.samples[0].token_ids[:3] and short.samples[0].finish_reason == "length"
    eos = omni.processor.tokenizer.eos_token_id
    ended = _one(omni, items, logit_bias=((eos, 100.0),)).samples[0]
    assert ended.token_ids == [eos] and ended.text == "" and ended.finish_reason == "stop"
    penalised = _one(omni, items, presence_penalty=2.0, frequency_penalty=2.0).samples[0].token_ids
    assert len(set(penalised)) > len(set(greedy.samples[0].token_ids))  # the greedy reply repeats itself
    repeat = _one(omni, items, repetition_penalty=5.0).samples[0].token_ids
    assert repeat != greedy.samples[0].token_ids


def test_stop_strings_end_the_reply_before_them_and_logprobs_are_the_models(omni, items):
    import torch

    greedy = _one(omni, items, logprobs=True, top_logprobs=3).samples[0]
    assert len(greedy.logprobs) == len(greedy.token_ids)
    for entry in greedy.logprobs:
        assert entry.top[0][0] == entry.token_id and entry.top[0][2] == pytest.approx(entry.logprob)  # greedy
        assert [t[2] for t in entry.top] == sorted((t[2] for t in entry.top), reverse=True)
    probs = torch.tensor([e.logprob for e in greedy.logprobs])
    assert bool((probs <= 0).all())
    stop = greedy.text[3:6]
    cut = _one(omni, items, stop=(stop,)).samples[0]
    assert cut.finish_reason == "stop" and cut.text == greedy.text[: greedy.text.index(stop)]


def test_text_tracker_holds_back_what_may_become_a_stop_string():
    from audiomcq.serve.sampling import TextTracker

    class Chars:
        """A tokenizer whose tokens are single characters."""

        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(i) for i in ids)

    tracker = TextTracker(Chars(), ("END",))
    sent = [tracker.push(ord(c)) for c in "abEN"]
    assert sent == ["a", "b", "", ""]  # "EN" may become "END"
    assert tracker.push(ord("x")) == "ENx"
    assert [tracker.push(ord(c)) for c in "yEND"] == ["y", "", "", ""] and tracker.stopped
    assert tracker.text == "abENxy" and tracker.flush() == ""


@pytest.mark.parametrize("family", FAMILIES)
def test_the_server_answers_the_same_with_and_without_the_shared_pass(family, request, items, tmp_path):
    from audiomcq.serve import ServeConfig
    from audiomcq.serve.predictor import AudioMCQModel
    from audiomcq.synth.audio import write_wav

    answers = []
    for shared in (True, False):
        model = AudioMCQModel("audiomcq", str(request.getfixturevalue(family)), ServeConfig(shared_pass=shared))
        model.load()
        instances = []
        for q, c, w in items:
            path = tmp_path / "clip.wav"
            write_wav(path, w)
            instances.append({"audio": base64.b64encode(path.read_bytes()).decode(), "question": q, "choices": c})
        answers.append(asyncio.run(model.predict({"instances": instances}))["predictions"])
    for a, b in zip(*answers, strict=True):
        assert {k: a[k] for k in ("answer", "index", "raw", "answer_source")} == {
            k: b[k] for k in ("answer", "index", "raw", "answer_source")
        }
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)
