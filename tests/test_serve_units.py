"""The predictor's parts in-process: choice scores against a plain forward, the micro-batcher, the OpenAI prompt
parser, settings from the environment, ``s3://`` audio and model directories (a real S3 server)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("kserve")


def _reference_scores(model, processor, question, choices, wave) -> list[float]:
    """Each choice's target log-likelihood from one unpadded row through the full model (logits for every token)."""
    import torch

    from audiomcq.models.batch import encode_prompts, prompt_text
    from audiomcq.prompts import solution

    out = []
    for choice in choices:
        target = solution(choice) + processor.tokenizer.eos_token
        enc = encode_prompts(processor, [prompt_text(processor, question, choices) + target], [wave])
        with torch.inference_mode():
            logp = torch.log_softmax(model(**enc).logits[0].float(), dim=-1)
        ids = enc["input_ids"][0]
        n = len(processor.tokenizer(target, add_special_tokens=False)["input_ids"])
        out.append(sum(float(logp[len(ids) - n - 1 + k, ids[len(ids) - n + k]]) for k in range(n)))
    return out


@pytest.mark.parametrize("family", ["tiny_omni", "tiny_qwen2_audio"])
def test_choice_scores_are_each_targets_log_likelihood_in_padded_batches(family, request, synth_corpus):
    from audiomcq.models import load_model
    from audiomcq.serve.scoring import choice_scores
    from audiomcq.synth.audio import read_wav

    loaded = load_model(request.getfixturevalue(family))
    rows = [json.loads(line) for line in (synth_corpus / "eval.jsonl").read_text().splitlines()[:3]]
    items = [
        (r["question"], r["choices"][: 2 + i], read_wav(synth_corpus / r["audio_path"])) for i, r in enumerate(rows)
    ]
    got = choice_scores(loaded.model, loaded.processor, items, rows=4)  # chunks mix questions and padding
    for item, scores in zip(items, got, strict=True):
        np.testing.assert_allclose(scores, _reference_scores(loaded.model, loaded.processor, *item), atol=2e-3)


def test_the_answer_is_the_named_choice_else_the_best_score():
    from audiomcq.serve.scoring import pick_answer

    choices = ["white noise", "sine tone", "clicks"]
    assert pick_answer("<answer>Sine tone</answer>", choices, [0, -9, -1]) == 1
    assert pick_answer("<answer>it is clicks</answer>", choices, [0, -9, -1]) == 2
    assert pick_answer("garbage", choices, [-5, -9, -1]) == 2
    assert pick_answer("<answer>noise or tone</answer>", choices, [-5, float("nan"), -7]) == 0


def test_micro_batcher_fills_batches_runs_off_the_loop_and_isolates_a_failure():
    from audiomcq.serve.batcher import MicroBatcher

    sizes, threads = [], set()

    def forward(items: list[int]) -> list[int]:
        sizes.append(len(items))
        threads.add(threading.current_thread().name)
        time.sleep(0.02)
        if 13 in items:
            raise ValueError("unlucky")
        return [2 * x for x in items]

    async def run():
        batcher = MicroBatcher(forward, max_batch=4, max_wait_ms=200)
        start = time.monotonic()
        results = await asyncio.gather(*(batcher.submit([i]) for i in range(8)), batcher.submit([20, 21]))
        assert results == [[2 * i] for i in range(8)] + [[40, 42]]
        assert sizes == [4, 4, 2]
        assert time.monotonic() - start < 0.4  # full batches leave at once; only the last waits out max_wait
        sizes.clear()
        outcome = await asyncio.gather(batcher.submit([1]), batcher.submit([13]), return_exceptions=True)
        assert outcome[0] == [2] and isinstance(outcome[1], ValueError)
        assert sizes == [2, 1, 1]  # the failed pair, then each alone

    asyncio.run(run())
    assert threads == {"audiomcq-forward_0"}  # forwards ran on the batcher's thread, never on the loop


def test_a_lone_request_waits_at_most_max_wait():
    from audiomcq.serve.batcher import MicroBatcher

    async def run():
        batcher = MicroBatcher(lambda xs: xs, max_batch=8, max_wait_ms=50)
        start = time.monotonic()
        assert await batcher.submit(["x"]) == ["x"]
        return time.monotonic() - start

    assert 0.04 < asyncio.run(run()) < 0.5


@pytest.mark.parametrize(
    ("question", "choices"),
    [
        ("What is heard?", ["a dog", "a cat"]),
        ("Which one, [A] or [B]?", ["it's A", 'the "B"', "a, b and c"]),
        ("Multi\nline question.", ["1.3s", "0.9s"]),
    ],
)
def test_the_model_card_prompt_is_parsed_back_into_question_and_choices(question, choices):
    from audiomcq.prompts import user_prompt
    from audiomcq.serve.openai_api import RequestError, parse_prompt

    assert parse_prompt(user_prompt(question, choices)) == (question, choices)
    with pytest.raises(RequestError, match="model-card prompt"):
        parse_prompt(question)
    with pytest.raises(RequestError, match="list of quoted strings"):
        parse_prompt(user_prompt(question, choices).replace(repr(choices), "[a, b]"))


def test_settings_come_from_the_environment_and_flags_win(monkeypatch):
    import argparse

    from audiomcq.errors import AudioMCQError
    from audiomcq.serve import ServeConfig, add_arguments

    monkeypatch.setenv("AUDIOMCQ_SERVE_MAX_CHOICES", "5")
    monkeypatch.setenv("AUDIOMCQ_SERVE_ALLOW_URL_PREFIXES", "s3://a/, https://b/")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = ServeConfig.from_args(parser.parse_args([]))
    assert config.max_choices == 5 and config.allow_url_prefixes == ("s3://a/", "https://b/")
    assert ServeConfig.from_args(
        parser.parse_args(["--max-choices", "7", "--sample-rates", "16000"])
    ).sample_rates == (16000,)
    monkeypatch.setenv("AUDIOMCQ_SERVE_MAX_WAIT_MS", "soon")
    with pytest.raises(AudioMCQError, match="AUDIOMCQ_SERVE_MAX_WAIT_MS"):
        add_arguments(argparse.ArgumentParser())
    with pytest.raises(AudioMCQError, match="max_choices must be at least 2"):
        ServeConfig(max_choices=1)


def test_s3_audio_urls_and_an_s3_model_dir(s3, tiny_omni, synth_corpus, tmp_path, monkeypatch):
    from kserve.errors import InvalidInput

    from audiomcq import storage
    from audiomcq.serve import ServeConfig
    from audiomcq.serve.inputs import parse_instance
    from audiomcq.serve.predictor import AudioMCQModel

    monkeypatch.setenv("AUDIOMCQ_STAGING", str(tmp_path / "staging"))
    record = json.loads((synth_corpus / "eval.jsonl").read_text().splitlines()[0])
    wav = (synth_corpus / record["audio_path"]).read_bytes()
    storage.publish(synth_corpus / "audio", "s3://data/clips")
    storage.publish(tiny_omni, "s3://data/models/tiny")
    config = ServeConfig(allow_url_prefixes=("s3://data/clips/",))
    question = {"question": record["question"], "choices": record["choices"]}
    url = f"s3://data/clips/{record['audio_path'].split('/')[-1]}"
    fetched = parse_instance("instance 0", {**question, "audio_url": url}, config)
    assert fetched.seconds == pytest.approx(len(fetched.wave) / 16000)
    for bad, reason in [("s3://data/models/tiny/config.json", "not under an allowed prefix"),
                        ("s3://data/clips/missing.wav", "could not be fetched")]:  # fmt: skip
        with pytest.raises(InvalidInput, match=reason):
            parse_instance("instance 0", {**question, "audio_url": bad}, config)

    model = AudioMCQModel("audiomcq", "s3://data/models/tiny", config)
    assert not model.ready
    assert model.load() and model.ready and "<|AUDIO|>" in model.forbidden
    body = {"instances": [{**question, "audio": base64.b64encode(wav).decode()}, {**question, "audio_url": url}]}
    by_data, by_url = asyncio.run(model.predict(body))["predictions"]
    assert by_data == by_url and by_data["answer"] == record["choices"][by_data["index"]]
