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
    from audiomcq.serve.chat import RequestError, parse_prompt

    assert parse_prompt(user_prompt(question, choices)) == (question, choices)
    assert parse_prompt(question) is None  # free text: a chat, not a model-card question
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


def _wav(samples: int, rate: int = 16000) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.full((samples, 1), 0.1, dtype=np.float32), rate, format="WAV")
    return buf.getvalue()


@pytest.mark.parametrize(("samples", "rate"), [(1, 16000), (5, 192000), (800, 16000), (4408, 44100)])
def test_clips_under_the_minimum_after_resampling_are_400(samples, rate):
    from kserve.errors import InvalidInput

    from audiomcq.serve import ServeConfig
    from audiomcq.serve.inputs import decode_audio

    with pytest.raises(InvalidInput, match=r"instance 3: .*shorter than the minimum of 0.1 s"):
        decode_audio("instance 3", _wav(samples, rate), ServeConfig())


@pytest.mark.parametrize("family", ["tiny_omni", "tiny_qwen2_audio"])
def test_the_shortest_accepted_clip_is_answered_by_both_families(family, request):
    """0.1 s must be enough for both model families (each fails on clips under ~1000 samples at 16 kHz)."""
    from audiomcq.serve import ServeConfig
    from audiomcq.serve.inputs import MIN_SAMPLES, decode_audio
    from audiomcq.serve.predictor import AudioMCQModel

    config = ServeConfig(device="cpu", max_wait_ms=0)
    wave, _ = decode_audio("instance 0", _wav(4409, 44100), config)  # rounds to exactly the minimum at 16 kHz
    assert len(wave) == MIN_SAMPLES == 1600
    model = AudioMCQModel("audiomcq", str(request.getfixturevalue(family)), config)
    model.load()
    choices = ["a dog", "a cat"]
    body = {
        "instances": [{"audio": base64.b64encode(_wav(MIN_SAMPLES)).decode(), "question": "What?", "choices": choices}]
    }
    (answer,) = asyncio.run(model.predict(body))["predictions"]
    assert answer["answer"] == choices[answer["index"]] and len(answer["scores"]) == 2


@pytest.mark.parametrize("bad", ["[{[]: 1}]", "[{1, []}]", "[" * 5000 + "]" * 5000, "[" * 5000 + "]"])
def test_choices_that_break_literal_eval_are_a_request_error(bad):
    from audiomcq.prompts import user_prompt
    from audiomcq.serve.chat import RequestError, parse_prompt

    with pytest.raises(RequestError, match="list of quoted strings"):
        parse_prompt(user_prompt("What?", ["a", "b"]).replace("['a', 'b']", bad))


def test_deeply_nested_v2_choices_are_400():
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferInput, InferRequest

    from audiomcq.serve import ServeConfig
    from audiomcq.serve.v2 import parse_v2

    request = InferRequest(
        "audiomcq",
        [InferInput("question", [1], "BYTES", ["What?"]), InferInput("choices", [1], "BYTES", ["[" * 100_000])],
    )
    with pytest.raises(InvalidInput, match="instance 0: 'choices' must be a JSON list"):
        parse_v2(request, ServeConfig())


def test_max_audio_seconds_is_capped_at_what_the_encoder_hears():
    from audiomcq.errors import AudioMCQError
    from audiomcq.serve import ServeConfig

    assert ServeConfig(max_audio_seconds=30).max_audio_seconds == 30
    for bad in (30.5, 0.05):
        with pytest.raises(AudioMCQError, match=r"max_audio_seconds must be 0\.1 to 30, .*cut instead of refused"):
            ServeConfig(max_audio_seconds=bad)


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ("ftp://host/", "scheme"),
        ("host/audio/", "scheme"),
        ("https:///audio/", "no host"),
        ("https://user@host/", "credentials"),
        ("https://host/a?sig=1", "query"),
        ("https://host/a/../b/", ". or .."),
        ("s3://bucket:9000/", "bucket, not a port"),
        ("https://host:99999/", "out of range"),
    ],
)
def test_bad_url_prefixes_fail_at_startup(prefix, reason):
    from audiomcq.errors import AudioMCQError
    from audiomcq.serve import ServeConfig

    with pytest.raises(AudioMCQError, match=f"allow_url_prefixes entry '.*' is not a usable prefix: .*{reason}"):
        ServeConfig(allow_url_prefixes=("https://fine/", prefix))


def test_url_prefixes_match_scheme_host_port_and_whole_path_segments():
    from kserve.errors import InvalidInput

    from audiomcq.serve import ServeConfig
    from audiomcq.serve.inputs import check_url

    config = ServeConfig(allow_url_prefixes=("https://host", "s3://bucket", "http://files:8080/audio"))
    for url in (
        "https://host/x.wav",
        "https://HOST:443/a/x.wav?sig=1",
        "s3://bucket/k.wav",
        "http://files:8080/audio/x.wav",
        "http://files:8080/audio/sub/x.wav",
    ):
        assert check_url("instance 0", url, config) == url
    for url in (
        "https://host.evil.com/x.wav",
        "https://host:8443/x.wav",
        "http://host/x.wav",
        "s3://bucket-private/k.wav",
        "http://files:8080/audio-private/x.wav",
        "http://files:8080/audio",
        "http://files/audio/x.wav",
        "https://evil.com/https://host/x.wav",
    ):
        with pytest.raises(InvalidInput, match="instance 0: 'audio_url' is not under an allowed prefix"):
            check_url("instance 0", url, config)
    for url, reason in [
        ("https://host:bad/x.wav", "not a valid URL"),
        ("https://host/a b.wav", "ASCII without"),
        ("s3://bucket/k.wav?versionId=1", "no ;, \\? or # parts"),
    ]:
        with pytest.raises(InvalidInput, match=reason):
            check_url("instance 0", url, config)


class _Drip:
    """An HTTP server on 127.0.0.1: ``/drip`` promises 100 kB and sends a byte every 20 ms; ``/big`` sends 5 kB."""

    def __enter__(self) -> str:
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "100000" if self.path.startswith("/drip") else "5000")
                self.end_headers()
                try:
                    if not self.path.startswith("/drip"):
                        self.wfile.write(b"x" * 5000)
                        return
                    for _ in range(500):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.02)
                except OSError:  # the client gave up
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_url_timeout_bounds_the_whole_fetch_and_logs_never_show_the_query(caplog):
    import logging
    import socket

    from kserve.errors import InvalidInput

    from audiomcq.serve import ServeConfig
    from audiomcq.serve.inputs import fetch_url

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens once the socket closes
    caplog.set_level(logging.INFO, logger="audiomcq.serve.inputs")
    with _Drip() as base:
        config = ServeConfig(
            allow_url_prefixes=(f"{base}/", f"http://127.0.0.1:{closed}/"), url_timeout_s=0.5, max_audio_bytes=1000
        )
        start = time.monotonic()
        with pytest.raises(InvalidInput, match=r"instance 0: 'audio_url' was not fetched within 0\.5 s"):
            fetch_url("instance 0", f"{base}/drip.wav?X-Amz-Signature=topsecret#frag", config)
        assert time.monotonic() - start < 1.5  # each byte came well within the socket timeout; the total did not
        with pytest.raises(InvalidInput, match="larger than the limit of 1000 bytes"):
            fetch_url("instance 0", f"{base}/big.wav", config)
        with pytest.raises(InvalidInput, match="could not be fetched"):
            fetch_url("instance 0", f"http://127.0.0.1:{closed}/x.wav?X-Amz-Signature=topsecret", config)
    assert "/drip.wav" in caplog.text and f":{closed}/x.wav" in caplog.text
    assert "topsecret" not in caplog.text and "frag" not in caplog.text


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
