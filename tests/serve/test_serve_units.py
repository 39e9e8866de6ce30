"""The predictor's parts in-process: choice scores against a plain forward, the answer taken from the reply or
else the scores, the micro-batcher (full batches, the wait, failures in and outside a forward), ``s3://`` audio
and model directories (a real S3 server), and refused requests logged without a traceback.
test_serve_inputs.py has the request inputs and the settings."""

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
    assert pick_answer("<answer>Sine tone</answer>", choices, [0, -9, -1]) == (1, "generated")
    assert pick_answer("<answer>it is clicks</answer>", choices, [0, -9, -1]) == (2, "generated")
    assert pick_answer("garbage", choices, [-5, -9, -1]) == (2, "scored")
    assert pick_answer("<answer>noise or tone</answer>", choices, [-5, float("nan"), -7]) == (0, "scored")


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


def test_s3_audio_urls_and_an_s3_model_dir(s3, tiny_omni, synth_corpus, tmp_path, monkeypatch):
    from kserve.errors import InvalidInput

    from audiomcq.infra import storage
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
    for bad, reason in [
        ("s3://data/models/tiny/config.json", "not under an allowed prefix"),
        ("s3://data/clips/missing.wav", "could not be fetched"),
    ]:
        with pytest.raises(InvalidInput, match=reason):
            parse_instance("instance 0", {**question, "audio_url": bad}, config)

    model = AudioMCQModel("audiomcq", "s3://data/models/tiny", config)
    assert not model.ready
    assert model.load() and model.ready and "<|AUDIO|>" in model.forbidden
    body = {"instances": [{**question, "audio": base64.b64encode(wav).decode()}, {**question, "audio_url": url}]}
    by_data, by_url = asyncio.run(model.predict(body))["predictions"]
    assert by_data == by_url and by_data["answer"] == record["choices"][by_data["index"]]


def test_a_batch_that_fails_outside_its_forward_settles_its_callers_and_the_batcher_keeps_serving():
    from audiomcq.serve.batcher import MicroBatcher

    calls = []

    def on_batch(size: int) -> None:
        calls.append(size)
        if len(calls) == 1:
            raise ValueError("metrics broke")

    def forward(items: list[int]) -> list[int]:
        return [] if 7 in items else [2 * x for x in items]  # 7: a result-length mismatch

    async def run():
        batcher = MicroBatcher(forward, max_batch=4, max_wait_ms=5, on_batch=on_batch)
        first = await asyncio.wait_for(asyncio.gather(batcher.submit([1, 2]), return_exceptions=True), 5)
        assert isinstance(first[0], ValueError)
        assert await asyncio.wait_for(batcher.submit([3]), 5) == [6]
        outcome = await asyncio.wait_for(
            asyncio.gather(batcher.submit([7]), batcher.submit([4]), return_exceptions=True), 5
        )
        assert isinstance(outcome[0], RuntimeError) and "0 results for 1 items" in str(outcome[0])
        assert outcome[1] == [8]  # its batch-mate was retried alone
        assert await asyncio.wait_for(batcher.submit([5]), 5) == [10]

    asyncio.run(run())


def test_rejected_requests_are_logged_as_one_info_line_not_an_error_with_a_traceback():
    import logging

    from kserve.errors import InvalidInput

    from audiomcq.serve.guard import ClientErrorsAtInfo

    def record(exc: BaseException) -> logging.LogRecord:
        return logging.LogRecord("kserve", logging.ERROR, __file__, 1, "Exception:", (), (type(exc), exc, None))

    bad = record(InvalidInput("instance 0: 'choices' must be a list of 2 to 10 strings"))
    assert ClientErrorsAtInfo().filter(bad) and bad.levelno == logging.INFO and bad.exc_info is None
    assert bad.getMessage() == "bad request: instance 0: 'choices' must be a list of 2 to 10 strings"
    crash = record(RuntimeError("CUDA out of memory"))  # a real server error stays an ERROR with its traceback
    assert ClientErrorsAtInfo().filter(crash) and crash.levelno == logging.ERROR and crash.exc_info is not None
