"""Turning request instances into checked questions: text limits, base64 or fetched audio, decoding to 16 kHz mono.

Every problem raises kserve's ``InvalidInput`` (HTTP 400) naming the instance and the reason, so a client never sees a
5xx for its own mistake. Audio must be WAV, FLAC or MP3, at most ``max_audio_bytes`` encoded and ``max_audio_seconds``
long, 1 to 8 channels, 8-192 kHz (or one of ``sample_rates`` when the operator lists some); it is mixed to mono and
resampled to 16 kHz, and must then last at least ``MIN_AUDIO_SECONDS`` (0.1 s; both model families fail on shorter
clips). All the clips of one request together may last at most ``max_request_audio_seconds``, checked from each clip's
header before its samples are decoded, so one request cannot hold the model (or a decoding thread) for long while other
requests wait. ``audio_url`` is fetched only under an allowed prefix (``audiomcq.serve.urls``), without following
redirects, never with ``.``/``..`` path segments (they could step outside the prefix), and an http(s) fetch as a whole
must finish within ``url_timeout_s``.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile as sf
from kserve.errors import InvalidInput

from audiomcq.audio import SR, decode, to_model_rate
from audiomcq.serve.config import MIN_AUDIO_SECONDS, ServeConfig
from audiomcq.serve.urls import dot_segments, redact

log = logging.getLogger(__name__)
FORMATS = {"WAV", "WAVEX", "FLAC", "MP3"}
MAX_CHANNELS = 8
RATE_RANGE = (8_000, 192_000)
FIELDS = {"audio", "audio_url", "question", "choices"}
MIN_SAMPLES = round(MIN_AUDIO_SECONDS * SR)
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Question:
    """One checked question: its text, its choices in display order, and the 16 kHz mono clip it is about."""

    question: str
    choices: tuple[str, ...]
    wave: np.ndarray = field(repr=False)
    seconds: float


def _text(where: str, name: str, value: Any, limit: int, forbidden: Sequence[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{where}: '{name}' must be a non-empty string")
    if len(value) > limit:
        raise InvalidInput(f"{where}: '{name}' has {len(value)} characters, more than the limit of {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{where}: '{name}' is not valid Unicode (lone surrogate)") from None
    for marker in forbidden:
        if marker in value:
            raise InvalidInput(f"{where}: '{name}' contains the model's control token {marker!r}")
    return value


def check_text(
    where: str, question: Any, choices: Any, config: ServeConfig, forbidden: Sequence[str] = ()
) -> tuple[str, tuple[str, ...]]:
    """The question and its choices, checked against the limits; control tokens are refused because they would
    change the prompt's structure (an extra audio placeholder breaks the processor)."""
    question = _text(where, "question", question, config.max_question_chars, forbidden)
    if not isinstance(choices, list) or not 2 <= len(choices) <= config.max_choices:
        count = f"{len(choices)} choices" if isinstance(choices, list) else type(choices).__name__
        raise InvalidInput(f"{where}: 'choices' must be a list of 2 to {config.max_choices} strings, not {count}")
    checked = tuple(
        _text(where, f"choices[{i}]", c, config.max_choice_chars, forbidden) for i, c in enumerate(choices)
    )
    if len({c.strip() for c in checked}) != len(checked):
        raise InvalidInput(f"{where}: 'choices' has duplicates, so an answer could not name one choice")
    return question, checked


def decode_base64(where: str, text: Any, config: ServeConfig) -> bytes:
    """The encoded audio file inside a base64 string, refused before decoding when it is too large."""
    if not isinstance(text, str) or not text:
        raise InvalidInput(f"{where}: 'audio' must be a non-empty base64 string")
    if len(text) > 4 * (config.max_audio_bytes // 3 + 1):
        raise InvalidInput(f"{where}: 'audio' is larger than the limit of {config.max_audio_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise InvalidInput(f"{where}: 'audio' is not valid base64 ({err})") from None
    if len(data) > config.max_audio_bytes:
        raise InvalidInput(f"{where}: 'audio' has {len(data)} bytes, more than the limit of {config.max_audio_bytes}")
    return data


def _over_budget(where: str, config: ServeConfig) -> InvalidInput:
    return InvalidInput(
        f"{where}: the request's clips last more than {config.max_request_audio_seconds:g} s "
        "together, the limit per request (--max-request-audio-seconds); send fewer or shorter clips "
        "per request"
    )


def decode_audio(
    where: str, data: bytes, config: ServeConfig, budget: float | None = None
) -> tuple[np.ndarray, float]:
    """16 kHz mono float32 samples and the clip's duration; the header is checked before the samples are read.

    ``budget``: the seconds of audio the request has left (``max_request_audio_seconds`` less its earlier clips)."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise InvalidInput(f"{where}: the audio is not a readable WAV, FLAC or MP3 file ({err})") from None
    if info.format not in FORMATS:
        raise InvalidInput(f"{where}: audio format {info.format} is not accepted (WAV, FLAC or MP3)")
    rate, channels = int(info.samplerate), int(info.channels)
    if config.sample_rates and rate not in config.sample_rates:
        raise InvalidInput(f"{where}: sample rate {rate} Hz is not accepted (accepted: {list(config.sample_rates)})")
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise InvalidInput(f"{where}: sample rate {rate} Hz is outside {RATE_RANGE[0]}-{RATE_RANGE[1]} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise InvalidInput(f"{where}: {channels} audio channels; 1 to {MAX_CHANNELS} are accepted")
    if info.frames / rate > config.max_audio_seconds:
        raise InvalidInput(
            f"{where}: the audio lasts {info.frames / rate:.1f} s, more than the limit of "
            f"{config.max_audio_seconds:g} s"
        )
    if budget is not None and info.frames / rate > budget:
        raise _over_budget(where, config)
    try:
        wave, rate = decode(data)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise InvalidInput(f"{where}: the audio could not be decoded ({err})") from None
    seconds = len(wave) / rate
    if len(wave) == 0:
        raise InvalidInput(f"{where}: the audio has no samples")
    if seconds > config.max_audio_seconds:  # an MP3 header may only estimate its length
        raise InvalidInput(
            f"{where}: the audio lasts {seconds:.1f} s, more than the limit of {config.max_audio_seconds:g} s"
        )
    if budget is not None and seconds > budget:
        raise _over_budget(where, config)
    if not np.isfinite(wave).all():
        raise InvalidInput(f"{where}: the audio has NaN or infinite samples")
    mono = to_model_rate(wave, rate)
    if len(mono) < MIN_SAMPLES:  # checked after resampling: a few samples at 192 kHz round to none at 16 kHz
        raise InvalidInput(
            f"{where}: the audio lasts {seconds:.4f} s, shorter than the minimum of "
            f"{MIN_AUDIO_SECONDS:g} s ({len(mono)} of {MIN_SAMPLES} samples at 16 kHz)"
        )
    return mono, seconds


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could leave the allowed prefix, so a 3xx is an error instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def check_url(where: str, url: Any, config: ServeConfig) -> str:
    """The URL, if it is a plain s3:// or http(s):// URL under an allowed prefix; else a 400 saying why."""
    if not isinstance(url, str) or not url:
        raise InvalidInput(f"{where}: 'audio_url' must be a non-empty string")
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise InvalidInput(
            f"{where}: 'audio_url' must be ASCII without spaces or control characters (percent-encode them)"
        )
    try:
        parsed = urllib.parse.urlsplit(url)
        plain = parsed.scheme in ("s3", "http", "https") and parsed.hostname and "@" not in parsed.netloc
        allowed = any(prefix.allows(parsed) for prefix in config.url_prefixes)
    except ValueError:  # a bad port or IPv6 host
        raise InvalidInput(f"{where}: 'audio_url' is not a valid URL") from None
    if not plain or dot_segments(parsed.path):
        raise InvalidInput(
            f"{where}: 'audio_url' must be a plain s3://, http:// or https:// URL without "
            "credentials or . / .. segments"
        )
    if parsed.scheme == "s3" and any(c in url for c in ";?#"):
        raise InvalidInput(
            f"{where}: an s3:// 'audio_url' takes no ;, ? or # parts (they would not be part of the key)"
        )
    if not allowed:
        raise InvalidInput(
            f"{where}: 'audio_url' is not under an allowed prefix (the operator allows "
            f"{list(config.allow_url_prefixes) or 'none'})"
        )
    return url


def _scrub(err: BaseException, url: str) -> str:
    """An error's message for the log, without the URL's query (a library may quote the URL it failed on)."""
    query = urllib.parse.urlsplit(url).query
    return str(err).replace(query, "<query>") if query else str(err)


def _read(resp: Any, limit: int, deadline: float) -> bytes:
    """At most ``limit + 1`` bytes, a chunk at a time (``read1``: one socket read each), until the deadline."""
    read = getattr(resp, "read1", None) or resp.read
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        if time.monotonic() > deadline:
            raise TimeoutError("the deadline passed while reading")
        chunk = read(min(CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def fetch_url(where: str, url: Any, config: ServeConfig) -> bytes:
    """The bytes at an allowed ``s3://`` or ``http(s)://`` URL, at most ``max_audio_bytes`` of them.

    ``url_timeout_s`` bounds the whole fetch, not each socket operation: the body is read a chunk at a time against
    a monotonic deadline, so a server dripping bytes holds a worker thread for that long plus at most one socket
    wait (itself at most ``url_timeout_s``), never indefinitely. Logs name the URL without its query (a pre-signed
    URL's signature).
    """
    url = check_url(where, url, config)
    limit = config.max_audio_bytes
    deadline = time.monotonic() + config.url_timeout_s
    try:
        if url.startswith("s3://"):
            from audiomcq.infra import storage

            bucket, key = storage.split(url)
            resp = storage.client().get_object(bucket, key)
            try:
                data = _read(resp, limit, deadline)
            finally:
                resp.close()
                resp.release_conn()
        else:
            opener = urllib.request.build_opener(_NoRedirect())
            with opener.open(url, timeout=max(deadline - time.monotonic(), 0.001)) as resp:
                data = _read(resp, limit, deadline)
    except urllib.error.HTTPError as err:
        raise InvalidInput(f"{where}: 'audio_url' answered HTTP {err.code}") from None
    except TimeoutError as err:
        log.info("%s: fetching %s took over %g s: %s", where, redact(url), config.url_timeout_s, _scrub(err, url))
        raise InvalidInput(f"{where}: 'audio_url' was not fetched within {config.url_timeout_s:g} s") from None
    except Exception as err:  # any failure to get an object the client named (S3 errors, timeouts, DNS) is a 400
        log.info("%s: fetching %s failed: %s", where, redact(url), _scrub(err, url))
        raise InvalidInput(f"{where}: 'audio_url' could not be fetched ({type(err).__name__})") from err
    if len(data) > limit:
        raise InvalidInput(f"{where}: 'audio_url' is larger than the limit of {limit} bytes")
    return data


def parse_instance(
    where: str, instance: Any, config: ServeConfig, forbidden: Sequence[str] = (), budget: float | None = None
) -> Question:
    """One V1-style instance (``audio`` base64 or ``audio_url``, ``question``, ``choices``) as a checked question;
    ``budget`` as for ``decode_audio``."""
    if not isinstance(instance, dict):
        raise InvalidInput(f"{where}: expected an object with audio (or audio_url), question and choices")
    unknown = sorted(set(instance) - FIELDS)
    if unknown:
        raise InvalidInput(f"{where}: unknown field(s) {unknown}; expected {sorted(FIELDS)}")
    question, choices = check_text(where, instance.get("question"), instance.get("choices"), config, forbidden)
    audio, url = instance.get("audio"), instance.get("audio_url")
    if (audio is None) == (url is None):
        raise InvalidInput(f"{where}: give exactly one of 'audio' (base64 WAV, FLAC or MP3) and 'audio_url'")
    data = decode_base64(where, audio, config) if audio is not None else fetch_url(where, url, config)
    wave, seconds = decode_audio(where, data, config, budget)
    return Question(question, choices, wave, seconds)


def parse_instances(instances: Sequence[Any], config: ServeConfig, forbidden: Sequence[str] = ()) -> list[Question]:
    """Every instance as a checked question, their clips together within ``max_request_audio_seconds``."""
    questions: list[Question] = []
    left = config.max_request_audio_seconds
    for i, instance in enumerate(instances):
        question = parse_instance(f"instance {i}", instance, config, forbidden, left)
        left -= question.seconds
        questions.append(question)
    return questions


def parse_v1(payload: Any, config: ServeConfig, forbidden: Sequence[str] = ()) -> list[Question]:
    """Every instance of a V1 ``{"instances": [...]}`` body, or a 400 naming the first bad one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list) or not payload["instances"]:
        raise InvalidInput("expected {'instances': [...]} with at least one instance")
    instances = payload["instances"]
    if len(instances) > config.max_instances:
        raise InvalidInput(f"{len(instances)} instances in one request; the limit is {config.max_instances}")
    return parse_instances(instances, config, forbidden)
