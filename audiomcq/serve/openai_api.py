"""An OpenAI-compatible ``/openai/v1/chat/completions`` (and ``/openai/v1/models``) for the audio MCQ predictor.

kserve's own OpenAI layer imports vllm, so this is a small FastAPI router of our own, mounted on kserve's app.
The last user message carries one ``input_audio`` part (base64 ``wav``, ``mp3`` or ``flac``) and text in the
model-card prompt format of ``audiomcq.prompts``: ``<question> Please choose the answer from the following options:
['A', 'B']. Output the final answer in <answer> </answer>.``; the choices are read back from that list. The reply's
content is the model's raw answer; decoding is greedy (``temperature`` is ignored), one choice, no streaming.
System messages are ignored: the model always hears its own model-card system prompt.
"""

from __future__ import annotations

import ast
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice

from audiomcq.prompts import USER_TEMPLATE
from audiomcq.serve.inputs import parse_instance

if TYPE_CHECKING:
    from audiomcq.serve.predictor import AudioMCQModel

AUDIO_FORMATS = ("wav", "mp3", "flac")
_BEFORE, _, _rest = USER_TEMPLATE.partition("{question}")
_MIDDLE, _, _AFTER = _rest.partition("{choices}")
PROMPT_RE = re.compile(
    re.escape(_BEFORE) + r"(?P<question>.+?)" + re.escape(_MIDDLE) + r"(?P<choices>\[.*\])" + re.escape(_AFTER),
    re.DOTALL,
)


class RequestError(Exception):
    """A request the endpoint refuses, with the HTTP status and the OpenAI error type to report."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


def parse_prompt(text: str) -> tuple[str, list[Any]]:
    """The question and the choices list from a model-card prompt text."""
    match = PROMPT_RE.fullmatch(text.strip())
    if match is None:
        raise RequestError(
            "the text part must be the model-card prompt: "
            + USER_TEMPLATE.format(question="<question>", choices="[...]")
        )
    try:  # TypeError: an unhashable key or set member, e.g. [{[]: 1}]; RecursionError: deep nesting
        choices = ast.literal_eval(match["choices"])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise RequestError("the choices in the prompt must be a list of quoted strings, e.g. ['yes', 'no']") from None
    if not isinstance(choices, list):
        raise RequestError("the choices in the prompt must be a list of quoted strings, e.g. ['yes', 'no']")
    return match["question"], choices


def parse_chat(body: Any, name: str, max_chars: int) -> dict[str, Any]:
    """The V1-style instance a chat completion request asks about (prompt text of at most ``max_chars``)."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    if body.get("model") != name:
        raise RequestError(f"model {body.get('model')!r} is not served here (only {name!r})", 404, "not_found_error")
    if body.get("stream"):
        raise RequestError("streaming is not supported; send stream: false")
    if body.get("n", 1) not in (1, None):
        raise RequestError("only n=1 is supported (decoding is greedy)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise RequestError("'messages' must be a non-empty list of message objects")
    users = [m for m in messages if m.get("role") == "user"]
    if not users or not isinstance(users[-1].get("content"), list):
        raise RequestError("the last user message must have content parts: one input_audio and the prompt text")
    parts = users[-1]["content"]
    audio = [p.get("input_audio") for p in parts if isinstance(p, dict) and p.get("type") == "input_audio"]
    texts = [p.get("text") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
    if len(audio) != 1 or not isinstance(audio[0], dict):
        raise RequestError(f"the user message needs exactly one input_audio part, not {len(audio)}")
    if audio[0].get("format") not in AUDIO_FORMATS:
        raise RequestError(f"input_audio.format must be one of {list(AUDIO_FORMATS)}")
    if not texts or not all(isinstance(t, str) for t in texts):
        raise RequestError("the user message needs a text part with the question and its choices")
    text = "\n".join(texts)
    if len(text) > max_chars:
        raise RequestError(f"the prompt text has {len(text)} characters, more than the limit of {max_chars}")
    question, choices = parse_prompt(text)
    return {"audio": audio[0].get("data"), "question": question, "choices": choices}


def _error(err: RequestError) -> JSONResponse:
    return JSONResponse({"error": {"message": str(err), "type": err.kind, "param": None, "code": None}}, err.status)


def openai_router(model: AudioMCQModel) -> APIRouter:
    """The OpenAI-compatible routes answering with ``model``."""
    router = APIRouter(prefix="/openai/v1")

    @router.get("/models")
    async def list_models() -> dict[str, Any]:
        card = Model(id=model.name, created=model.created, object="model", owned_by="audiomcq")
        return {"object": "list", "data": [card.model_dump(exclude_none=True)]}

    @router.post("/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        if not model.ready:
            return _error(RequestError(f"model {model.name} is not ready", 503, "service_unavailable"))
        try:
            try:
                body = await request.json()
            except (ValueError, RecursionError):  # RecursionError: nesting deeper than the json module's stack
                raise RequestError("the body is not valid JSON") from None
            c = model.config
            limit = len(USER_TEMPLATE) + c.max_question_chars + c.max_choices * (c.max_choice_chars + 4)
            instance = parse_chat(body, model.name, limit)
            question = await model.parse(lambda: parse_instance("message", instance, c, model.forbidden))
        except RequestError as err:
            return _error(err)
        except InvalidInput as err:
            return _error(RequestError(str(err)))
        (answer,) = await model.answer([question])
        completion = ChatCompletion(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            object="chat.completion",
            created=int(time.time()),
            model=model.name,
            choices=[
                Choice(
                    index=0, finish_reason="stop", message=ChatCompletionMessage(role="assistant", content=answer.raw)
                )
            ],
        )
        return JSONResponse(completion.model_dump(exclude_none=True))

    return router
