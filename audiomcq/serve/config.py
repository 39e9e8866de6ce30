"""The model server's settings: where it listens, how long and how much it reads, batching, generation and input
limits, each a CLI flag and an environment variable.

A flag's default comes from ``AUDIOMCQ_SERVE_<NAME>`` (``--max-audio-seconds`` <- ``AUDIOMCQ_SERVE_MAX_AUDIO_SECONDS``)
so a Deployment can set limits without changing its command; an explicit flag wins. Lists are comma-separated.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.models.loading import DTYPES
from audiomcq.serve.urls import UrlPrefix

ENV_PREFIX = "AUDIOMCQ_SERVE_"
ENCODER_SECONDS = 30.0  # the processor cuts audio features at 30 s, so a longer limit would cut clips, not refuse
MIN_AUDIO_SECONDS = 0.1  # after resampling to 16 kHz; both model families fail on clips under ~1000 samples


@dataclass(frozen=True)
class ServeConfig:
    """Everything the predictor needs besides the model directory, its name and the port."""

    max_batch_size: int = 8
    max_wait_ms: float = 10.0
    max_new_tokens: int = 32
    dtype: str = "auto"
    device: str = "auto"
    max_instances: int = 16
    max_audio_bytes: int = 10 * 1024 * 1024
    max_audio_seconds: float = 30.0
    max_choices: int = 10
    max_question_chars: int = 2000
    max_choice_chars: int = 500
    sample_rates: tuple[int, ...] = ()
    allow_url_prefixes: tuple[str, ...] = ()
    url_timeout_s: float = 10.0
    shared_pass: bool = True
    max_completion_tokens: int = 512
    max_n: int = 4
    max_chat_chars: int = 20000
    max_request_audio_seconds: float = 120.0
    host: str = "0.0.0.0"
    max_body_bytes: int = 64 * 1024 * 1024
    body_timeout_s: float = 60.0
    header_timeout_s: float = 10.0
    max_header_bytes: int = 64 * 1024
    keep_alive_s: float = 65.0

    def __post_init__(self) -> None:
        positive = (
            "max_batch_size",
            "max_new_tokens",
            "max_instances",
            "max_audio_bytes",
            "max_audio_seconds",
            "max_choices",
            "max_question_chars",
            "max_choice_chars",
            "url_timeout_s",
            "max_completion_tokens",
            "max_n",
            "max_chat_chars",
            "max_request_audio_seconds",
            "max_body_bytes",
            "body_timeout_s",
            "header_timeout_s",
            "max_header_bytes",
            "keep_alive_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise AudioMCQError(f"serve: {name} must be positive, not {getattr(self, name)}")
        if not self.host.strip():
            raise AudioMCQError("serve: host must be an address to listen on, such as 0.0.0.0 or 127.0.0.1")
        if self.max_request_audio_seconds < MIN_AUDIO_SECONDS:
            raise AudioMCQError(
                f"serve: max_request_audio_seconds must be at least {MIN_AUDIO_SECONDS:g} (the "
                f"shortest clip), not {self.max_request_audio_seconds:g}"
            )
        if self.max_wait_ms < 0:
            raise AudioMCQError(f"serve: max_wait_ms must be >= 0, not {self.max_wait_ms}")
        if self.dtype not in DTYPES:
            raise AudioMCQError(f"serve: dtype must be one of {DTYPES}, not {self.dtype!r}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise AudioMCQError(f"serve: device must be auto, cpu or cuda[:N], not {self.device!r}")
        if self.max_choices < 2:
            raise AudioMCQError("serve: max_choices must be at least 2 (a question needs two choices)")
        if not MIN_AUDIO_SECONDS <= self.max_audio_seconds <= ENCODER_SECONDS:
            raise AudioMCQError(
                f"serve: max_audio_seconds must be {MIN_AUDIO_SECONDS:g} to {ENCODER_SECONDS:g}, not "
                f"{self.max_audio_seconds:g} (the audio encoder hears {ENCODER_SECONDS:g} s at most, so a longer "
                "clip would be cut instead of refused)"
            )
        _ = self.url_prefixes  # a bad prefix fails at startup, not on the first request

    @cached_property
    def url_prefixes(self) -> tuple[UrlPrefix, ...]:
        """``allow_url_prefixes`` parsed, so URLs are matched by scheme, host, port and whole path segments."""
        parsed = []
        for text in self.allow_url_prefixes:
            try:
                parsed.append(UrlPrefix.parse(text))
            except ValueError as err:
                raise AudioMCQError(
                    f"serve: allow_url_prefixes entry {text!r} is not a usable prefix: {err}"
                ) from None
        return tuple(parsed)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeConfig:
        """The settings an ``add_arguments`` parser produced."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


HELP = {
    "max_batch_size": "most questions answered in one forward pass (concurrent requests are batched together)",
    "max_wait_ms": "how long the first queued question waits for others to fill its batch",
    "max_new_tokens": "tokens generated for the raw answer",
    "dtype": "model dtype: auto (the checkpoint's own, float32 on a CPU without bf16), bfloat16, float16, float32",
    "device": "auto (a CUDA GPU when there is one, else the CPU), cpu or cuda[:N]",
    "max_instances": "questions in one request",
    "max_audio_bytes": "size of one encoded audio file (before base64)",
    "max_audio_seconds": "duration of one clip, at most 30 (the audio encoder hears 30 s; longer clips are refused, "
    "not cut); clips under 0.1 s are refused too",
    "max_choices": "choices per question (at least 2 are always required)",
    "max_question_chars": "characters in a question",
    "max_choice_chars": "characters in one choice",
    "sample_rates": "accepted sample rates, e.g. 16000,48000; empty (default) accepts any and resamples to 16 kHz",
    "allow_url_prefixes": "audio_url prefixes the server may fetch (s3://bucket/, https://host/dir/): same scheme, "
    "host and port, path under whole segments; default none",
    "url_timeout_s": "total time for fetching one http(s) audio_url (connecting, headers and body)",
    "shared_pass": "score the choices from the generation's prefill cache, one audio pass per question (false: "
    "re-encode the audio and prompt for every choice, the slower reference path)",
    "max_completion_tokens": "most tokens a chat completion may generate; also its default when a request names none",
    "max_n": "most completions (n) in one chat request",
    "max_chat_chars": "characters of text in all the messages of one chat request",
    "max_request_audio_seconds": "seconds of audio in all the clips of one request together, so that one request "
    "cannot hold the model for long while others wait",
    "host": "address to listen on: 0.0.0.0 (every IPv4 interface, the default), 127.0.0.1 (this machine only), "
    ":: (IPv6 only) or one interface's address",
    "max_body_bytes": "size of one request body; a larger one is refused with a 413 before it is parsed (from its "
    "Content-Length, or as soon as a streamed body passes the limit)",
    "body_timeout_s": "time for a request's whole body to arrive once its headers have; a slower one gets a 408",
    "header_timeout_s": "time for a request's headers to arrive, from its first byte (or from the connection's "
    "opening); a slower connection gets a 408 and is closed",
    "max_header_bytes": "size of a request's line and headers together; larger ones get a 431 and the connection "
    "is closed",
    "keep_alive_s": "how long an idle connection stays open between requests",
}


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _list(kind: type) -> Any:
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values, not {text!r}"
            ) from None

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting, its default read from the environment (see the module docstring)."""
    group = parser.add_argument_group(
        "listening, read limits, batching, generation and input limits (env AUDIOMCQ_SERVE_<NAME>)"
    )
    for f in fields(ServeConfig):
        default = f.default
        parse: Any = type(default)
        if isinstance(default, bool):
            parse = _bool
        elif f.name == "sample_rates":
            parse = _list(int)
        elif f.name == "allow_url_prefixes":
            parse = _list(str)
        env = os.environ.get(ENV_PREFIX + f.name.upper())
        if env is not None:
            try:
                default = parse(env)
            except (ValueError, argparse.ArgumentTypeError) as err:
                raise AudioMCQError(f"{ENV_PREFIX}{f.name.upper()}={env!r}: {err}") from None
        flag = "--" + f.name.replace("_", "-")
        group.add_argument(flag, dest=f.name, type=parse, default=default, help=f"{HELP[f.name]} (default {default})")
