"""Reading an OpenAI chat completion request: every option is honoured or refused, none is silently ignored.

Honoured: ``messages`` (system/developer, user, assistant turns; text and at most one ``input_audio`` part of
``wav``, ``mp3`` or ``flac`` in the whole conversation, as on the vLLM runtime), ``temperature``, ``top_p``,
``max_tokens``/``max_completion_tokens``, ``stop``, ``seed``, ``n``, ``logprobs``/``top_logprobs``,
``frequency_penalty``, ``presence_penalty``, ``logit_bias``, ``stream`` and ``stream_options.include_usage``, plus
vLLM's ``top_k`` and ``repetition_penalty``. ``user`` and ``safety_identifier`` only label the request. Options
that ask for something this server does not do (tools, JSON output, audio output, stored completions, reasoning
effort, ...) are refused with a 400 naming them, unless their value asks for nothing (``tool_choice: "none"``,
``response_format: {"type": "text"}``, ``modalities: ["text"]``, ``store: false``...). Unknown fields are refused.

Settings a request leaves out default as on vLLM: the checkpoint's ``generation_config.json`` values (temperature,
top_p, top_k, repetition_penalty), else OpenAI's (temperature 1, top_p 1). Without a system message the model hears
its model-card system prompt. When the last user turn's text is a question in the model-card form
(``audiomcq.prompts``), its choices are also scored from the same prefill.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audiomcq.prompts import SYSTEM_PROMPT, USER_TEMPLATE
from audiomcq.serve.config import ServeConfig
from audiomcq.serve.sampling import GenParams

AUDIO_FORMATS = ("wav", "mp3", "flac")
MAX_AUDIO = 1  # input_audio parts per request, the vLLM runtime's --limit-mm-per-prompt
MAX_STOP = 4
MAX_TOP_LOGPROBS = 20
_BEFORE, _, _rest = USER_TEMPLATE.partition("{question}")
_MIDDLE, _, _AFTER = _rest.partition("{choices}")
PROMPT_RE = re.compile(
    re.escape(_BEFORE) + r"(?P<question>.+?)" + re.escape(_MIDDLE) + r"(?P<choices>\[.*\])" + re.escape(_AFTER),
    re.DOTALL,
)
HONOURED = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "n",
    "logprobs",
    "top_logprobs",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "user",
    "safety_identifier",
    "top_k",
    "repetition_penalty",
}
# Options this server cannot honour: the values that ask for nothing, and why anything else is refused.
REFUSED: dict[str, tuple[tuple[Any, ...], str]] = {
    "tools": ((None, []), "tool calling is not supported"),
    "functions": ((None, []), "function calling is not supported"),
    "tool_choice": ((None, "none"), "tool calling is not supported"),
    "function_call": ((None, "none"), "function calling is not supported"),
    "parallel_tool_calls": ((None, False), "tool calling is not supported"),
    "response_format": ((None, {"type": "text"}), "only plain text output is supported (no JSON mode or schema)"),
    "modalities": ((None, ["text"]), "only text output is supported (no audio output)"),
    "audio": ((None,), "audio output is not supported"),
    "store": ((None, False), "completions are not stored"),
    "metadata": ((None, {}), "metadata is only kept for stored completions, which are not supported"),
    "prediction": ((None,), "predicted outputs are not supported"),
    "reasoning_effort": ((None,), "reasoning effort cannot be set for this model"),
    "verbosity": ((None,), "verbosity cannot be set for this model"),
    "web_search_options": ((None,), "web search is not supported"),
    "service_tier": ((None, "auto", "default"), "only the default service tier exists"),
    "prompt_cache_key": ((None,), "prompt caching across requests is not supported"),
    "prompt_cache_retention": ((None,), "prompt caching across requests is not supported"),
    "prompt_cache_options": ((None,), "prompt caching across requests is not supported"),
    "moderation": ((None,), "this server runs no moderation"),
}


class RequestError(Exception):
    """A request the endpoint refuses: HTTP status, OpenAI error type, and the parameter at fault."""

    def __init__(
        self, message: str, status: int = 400, kind: str = "invalid_request_error", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.param = status, kind, param


@dataclass
class ChatRequest:
    """A checked chat request: template-ready messages, the base64 audio to decode, and how to decode."""

    messages: list[dict[str, Any]]
    audio: list[tuple[str, str]]  # (base64 data, format)
    params: GenParams
    stream: bool = False
    include_usage: bool = False
    mcq: tuple[str, tuple[str, ...]] | None = None
    waves: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0


def parse_prompt(text: str) -> tuple[str, list[Any]] | None:
    """The question and choices of a model-card prompt text; None when the text is not in that form."""
    match = PROMPT_RE.fullmatch(text.strip())
    if match is None:
        return None
    try:  # TypeError: an unhashable key or set member, e.g. [{[]: 1}]; RecursionError: deep nesting
        choices = ast.literal_eval(match["choices"])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise RequestError("the choices in the prompt must be a list of quoted strings, e.g. ['yes', 'no']") from None
    if not isinstance(choices, list):
        raise RequestError("the choices in the prompt must be a list of quoted strings, e.g. ['yes', 'no']")
    return match["question"], choices


def _number(body: dict, name: str, low: float, high: float, default: float, integer: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        return default
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise RequestError(f"'{name}' must be {kind} from {low:g} to {high:g}, not {value!r}", param=name)
    return value


def _refusals(body: dict) -> None:
    for name in body:
        if name not in HONOURED and name not in REFUSED:
            raise RequestError(f"unknown parameter '{name}'", param=name)
    for name, (allowed, reason) in REFUSED.items():
        if name in body and body[name] not in allowed:
            nothing_to_call = not body.get("tools") and not body.get("functions")
            if name in ("tool_choice", "function_call") and body[name] == "auto" and nothing_to_call:
                continue  # "auto" with nothing to call asks for nothing
            raise RequestError(f"'{name}' {body[name]!r} is not supported: {reason}", param=name)


def _stop(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOP:
        raise RequestError(f"'stop' must be a non-empty string or a list of at most {MAX_STOP} of them", param="stop")
    return tuple(stops)


def _logit_bias(body: dict, vocab: int) -> tuple[tuple[int, float], ...]:
    bias = body.get("logit_bias")
    if bias is None:
        return ()
    if not isinstance(bias, dict):
        raise RequestError("'logit_bias' must map token ids to biases from -100 to 100", param="logit_bias")
    out = []
    for key, value in bias.items():
        token = int(key) if isinstance(key, str) and key.isdigit() else None
        if token is None or token >= vocab or isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestError(
                f"'logit_bias' has an invalid entry {key!r}: {value!r} (token ids 0 to {vocab - 1})",
                param="logit_bias",
            )
        if not -100 <= value <= 100:
            raise RequestError(f"'logit_bias' values must be from -100 to 100, not {value!r}", param="logit_bias")
        out.append((token, float(value)))
    return tuple(out)


def gen_params(body: dict, config: ServeConfig, defaults: dict[str, Any], vocab: int) -> GenParams:
    """The decoding settings a request asks for, checked against OpenAI's ranges and the server's limits."""
    if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
        raise RequestError("give one of 'max_tokens' and 'max_completion_tokens', not both", param="max_tokens")
    name = "max_tokens" if body.get("max_tokens") is not None else "max_completion_tokens"
    limit = config.max_completion_tokens
    max_tokens = _number(body, name, 1, limit, limit, integer=True)
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise RequestError("'logprobs' must be true or false", param="logprobs")
    top = _number(body, "top_logprobs", 0, MAX_TOP_LOGPROBS, 0, integer=True)
    if top and not logprobs:
        raise RequestError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("'seed' must be an integer", param="seed")
    return GenParams(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0, 2, defaults.get("temperature", 1.0)),
        top_p=_number(body, "top_p", 1e-9, 1, defaults.get("top_p", 1.0)),
        top_k=_number(body, "top_k", 0, vocab, max(defaults.get("top_k") or 0, 0), integer=True),
        n=_number(body, "n", 1, config.max_n, 1, integer=True),
        seed=None if seed is None else seed % 2**63,
        stop=_stop(body),
        logprobs=bool(logprobs),
        top_logprobs=top,
        frequency_penalty=_number(body, "frequency_penalty", -2, 2, 0.0),
        presence_penalty=_number(body, "presence_penalty", -2, 2, 0.0),
        repetition_penalty=_number(body, "repetition_penalty", 0.01, 10, defaults.get("repetition_penalty", 1.0)),
        logit_bias=_logit_bias(body, vocab),
    )


def _text_of(where: str, content: Any, allow_audio: bool, audio: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """A message's content as template blocks; its audio parts go to ``audio``."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise RequestError(f"{where}: 'content' must be a string or a non-empty list of parts", param="messages")
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str) and set(part) <= {"type", "text"}:
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "input_audio" and allow_audio:
            data = part.get("input_audio")
            if not isinstance(data, dict) or not isinstance(data.get("data"), str) or set(part) != {"type", kind}:
                raise RequestError(
                    f"{where}: an input_audio part needs 'input_audio': {{'data', 'format'}}", param="messages"
                )
            if data.get("format") not in AUDIO_FORMATS:
                raise RequestError(
                    f"{where}: input_audio.format must be one of {list(AUDIO_FORMATS)}", param="messages"
                )
            audio.append((data["data"], data["format"]))
            blocks.append({"type": "audio", "audio": f"clip {len(audio)}"})
        else:
            what = kind if isinstance(kind, str) else type(part).__name__
            raise RequestError(
                f"{where}: content part {what!r} is not supported (text and input_audio are)", param="messages"
            )
    return blocks


def read_messages(messages: Any) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Template-ready messages (the model-card system prompt first unless the request has its own) and the audio."""
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise RequestError("'messages' must be a non-empty list of message objects", param="messages")
    out: list[dict[str, Any]] = []
    audio: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        where, role = f"messages[{i}]", message.get("role")
        if role not in ("system", "developer", "user", "assistant"):
            raise RequestError(
                f"{where}: role {role!r} is not supported (system, developer, user, assistant are)", param="messages"
            )
        extra = sorted(set(message) - {"role", "content"} - ({"refusal"} if role == "assistant" else set()))
        if extra or (role == "assistant" and message.get("refusal") is not None):
            raise RequestError(
                f"{where}: {extra or ['refusal']} not supported (tool calls, names and refusals cannot be replayed)",
                param="messages",
            )
        if role in ("system", "developer"):
            if i != 0:
                raise RequestError(f"{where}: a {role} message must come first", param="messages")
            out.append({"role": "system", "content": _text_of(where, message.get("content"), False, audio)})
        else:
            out.append({"role": role, "content": _text_of(where, message.get("content"), role == "user", audio)})
    if out[-1]["role"] != "user":
        raise RequestError(
            "the last message must be the user's: the reply continues the conversation", param="messages"
        )
    if len(audio) > MAX_AUDIO:
        raise RequestError(f"{len(audio)} input_audio parts; at most {MAX_AUDIO} per request", param="messages")
    if out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]})
    return out, audio


def check_texts(messages: Sequence[dict[str, Any]], config: ServeConfig, forbidden: Sequence[str]) -> None:
    """The total text within the limit, and no control token that would change the prompt's structure."""
    texts = [b["text"] for m in messages[1:] for b in m["content"] if b["type"] == "text"]
    system = messages[0]["content"][0]["text"]
    total = sum(map(len, texts)) + (0 if system == SYSTEM_PROMPT else len(system))
    if total > config.max_chat_chars:
        raise RequestError(
            f"the messages have {total} characters of text, more than the limit of {config.max_chat_chars}",
            param="messages",
        )
    for text in [system, *texts]:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError("a message is not valid Unicode (lone surrogate)", param="messages") from None
        for marker in forbidden:
            if marker in text:
                raise RequestError(f"a message contains the model's control token {marker!r}", param="messages")


def mcq_of(messages: Sequence[dict[str, Any]]) -> tuple[str, list[Any]] | None:
    """The question and choices when the last user turn's text is in the model-card form."""
    text = "\n".join(b["text"] for b in messages[-1]["content"] if b["type"] == "text")
    return parse_prompt(text)


def parse_chat(body: Any, name: str, config: ServeConfig, defaults: dict[str, Any], vocab: int) -> ChatRequest:
    """A chat completion body as a ``ChatRequest`` (audio not yet decoded), or a ``RequestError`` saying why not."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    if body.get("model") != name:
        raise RequestError(
            f"the model {body.get('model')!r} does not exist (this server has {name!r})",
            404,
            "not_found_error",
            "model",
        )
    _refusals(body)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("'stream' must be true or false", param="stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise RequestError("'stream_options' is only allowed with 'stream': true", param="stream_options")
        if not isinstance(options, dict) or set(options) - {"include_usage", "include_obfuscation"}:
            raise RequestError(
                "'stream_options' takes 'include_usage' (and 'include_obfuscation': false)", param="stream_options"
            )
        if options.get("include_obfuscation"):
            raise RequestError(
                "'stream_options.include_obfuscation' is not supported: chunks are not padded", param="stream_options"
            )
        include_usage = bool(options.get("include_usage"))
    messages, audio = read_messages(body.get("messages"))
    params = gen_params(body, config, defaults, vocab)
    return ChatRequest(messages, audio, params, bool(stream), include_usage)
