"""A request's inputs and the server's settings, in-process: the OpenAI prompt parser and choices that would break
it or a V2 parse, settings from the environment and flags, URL prefixes checked at startup and against each URL,
URL fetches bounded in time and size with no query string in the logs, and the shortest clip accepted after
resampling, which both model families must answer."""

from __future__ import annotations

import asyncio
import base64
import threading
import time

import numpy as np
import pytest

pytest.importorskip("kserve")


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
