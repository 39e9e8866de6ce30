"""The generation steps for one source item: question formation, MCQ, structured CoT, simple CoT, grading.

Each LLM step renders its versioned prompt file (``prompts/<step>.v1.txt``), asks for JSON, validates the reply
against a JSON schema plus the checks a schema cannot express (the answer is exactly one of four distinct
choices; the type is allowed for the source), and on failure asks again with the validation error, up to
``tries`` times. An item that cannot be completed ends as a reject with the step and the reason; nothing raises
out of a step except a programming error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from audiomcq.errors import AudioMCQError

PROMPT_VERSION = "v1"
TYPES = ("sound", "music", "speech", "temporal")
# Which question types each source may produce (TACOS: temporal only, as in the paper); unknown sources: all but
# temporal.
SOURCE_TYPES: dict[str, tuple[str, ...]] = {
    "TACOS": ("temporal",),
    "MusicCaps": ("music",),
    "LP-MusicCaps": ("music",),
    "SpeechCraft": ("speech",),
    "Clotho": ("sound",),
    "AudioCaps": ("sound", "music", "speech"),
    "CompA-R": ("sound", "music", "speech"),
}
MIN_GRADE = 4  # the paper drops a sample when any of the five scores is below 4
GRADES = ("answer_consistency", "distractor_quality", "fluency", "reasoning_fidelity", "simple_reasoning_fidelity")


def _strings(*names: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(names),
        "properties": {n: {"type": "string", "minLength": 1} for n in names},
    }


SCHEMAS: dict[str, dict[str, Any]] = {
    "mcq": {
        "type": "object",
        "required": ["question", "choices", "answer", "question_type"],
        "properties": {
            "question": {"type": "string", "minLength": 5},
            "choices": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 4, "maxItems": 4},
            "answer": {"type": "string", "minLength": 1},
            "question_type": {"enum": list(TYPES)},
        },
    },
    "cot_structured": _strings("stage1", "stage2", "stage3"),
    "cot_simple": _strings("simple_analysis"),
    "grade": {
        "type": "object",
        "required": list(GRADES),
        "properties": {g: {"type": "integer", "minimum": 1, "maximum": 5} for g in GRADES},
    },
}


class Reject(Exception):
    """An item that ends without a sample: the step and the reason."""

    def __init__(self, step: str, reason: str, attempts: int = 0) -> None:
        super().__init__(f"{step}: {reason}")
        self.step, self.reason, self.attempts = step, reason, attempts


@cache
def prompt(step: str) -> tuple[str, str]:
    """(system, user) templates of a step's prompt file."""
    text = resources.files("audiomcq.sdg").joinpath(f"prompts/{step}.{PROMPT_VERSION}.txt").read_text()
    _, system, user = re.split(r"^### (?:system|user)\n", text, flags=re.MULTILINE)
    return system.strip(), user.strip()


@cache
def formation_questions() -> dict[str, str]:
    """Step 0's generic question per kind, from its prompt file."""
    text = resources.files("audiomcq.sdg").joinpath(f"prompts/question_formation.{PROMPT_VERSION}.txt").read_text()
    pairs = (line.split(":", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {kind.strip(): question.strip() for kind, question in pairs}


def parse_json(text: str) -> Any:
    """The JSON object in a reply (a fenced code block or surrounding prose is tolerated)."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the reply")
    return json.loads(body[start : end + 1])


def validate(step: str, obj: Any, allowed: tuple[str, ...] = TYPES) -> None:
    """Schema validation plus the checks a schema cannot express; raises ValueError with the problem."""
    import jsonschema

    try:
        jsonschema.validate(obj, SCHEMAS[step])
    except jsonschema.ValidationError as err:
        where = "/".join(map(str, err.absolute_path)) or "reply"
        raise ValueError(f"{where}: {err.message}") from None
    if step == "mcq":
        choices = [c.strip() for c in obj["choices"]]
        if len({c.casefold() for c in choices}) != len(choices):
            raise ValueError("choices must be distinct")
        if sum(c == obj["answer"].strip() for c in choices) != 1:
            raise ValueError("answer must be exactly one of the choices, copied exactly")
        if obj["question_type"] not in allowed:
            raise ValueError(f"question_type must be one of {list(allowed)} for this source")


def ask_json(
    chat: Callable[[str, list[dict[str, str]]], str],
    step: str,
    fields: dict[str, Any],
    tries: int,
    allowed: tuple[str, ...] = TYPES,
) -> dict[str, Any]:
    """Render ``step``'s prompt, ask, validate; retry with the error; raise Reject after ``tries``."""
    system, user = prompt(step)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user.format(**fields)}]
    error = "no reply"
    for attempt in range(1, tries + 1):
        try:
            reply = chat(step, messages)
        except AudioMCQError as err:  # the endpoint gave up (timeouts, 429s, 5xx after retries)
            raise Reject(step, f"llm_unavailable: {err}", attempt) from None
        try:
            obj = parse_json(reply)
            validate(step, obj, allowed)
            return obj
        except ValueError as err:  # json.JSONDecodeError is a ValueError
            error = str(err)
            messages = [
                *messages,
                {"role": "assistant", "content": reply},
                {"role": "user", "content": f"That reply is invalid: {error}. Reply again with the JSON object only."},
            ]
    raise Reject(step, f"invalid_output: {error}", tries)


@dataclass(frozen=True)
class Draft:
    """What the steps produce for one item before deduplication and decontamination."""

    fields: dict[str, Any]  # caption, question (original), source
    mcq: dict[str, Any]
    structured_cot: str
    simple_cot: str
    grades: dict[str, int]


def kind_of(source: str) -> str:
    types = SOURCE_TYPES.get(source, ("sound",))
    return types[0] if len(types) == 1 else "sound"


def run_steps(chat: Callable[[str, list[dict[str, str]]], str], item: Any, tries: int = 3) -> Draft:
    """All LLM steps for one ``SourceItem``; raises Reject."""
    caption = item.caption if item.caption is not None else item.answer
    if item.segments:
        caption = "; ".join(f"{s['start']:.1f}s-{s['end']:.1f}s: {s['text']}" for s in item.segments)
    if not caption:
        raise Reject("formation", "the item has no caption or answer to build a question from")
    question = item.question or formation_questions()[kind_of(item.source)]
    allowed = SOURCE_TYPES.get(item.source, ("sound", "music", "speech"))
    hint = "Options must be timestamps such as 21.2s." if allowed == ("temporal",) else ""
    fields = {
        "source": item.source,
        "question": question,
        "caption": caption,
        "allowed_types": ", ".join(allowed),
        "type_hint": hint,
    }
    mcq = ask_json(chat, "mcq", fields, tries, allowed)
    mcq = {**mcq, "choices": [c.strip() for c in mcq["choices"]], "answer": mcq["answer"].strip()}
    shown = {**fields, **mcq, "choices": json.dumps(mcq["choices"], ensure_ascii=False)}
    stages = ask_json(chat, "cot_structured", shown, tries)
    structured = "".join(f"<stage{i}>{stages[f'stage{i}']}</stage{i}>" for i in (1, 2, 3))
    simple = ask_json(chat, "cot_simple", {**shown, "structured_cot": structured}, tries)["simple_analysis"]
    simple_cot = f"<simple analysis>{simple}</simple analysis>"
    grades = ask_json(chat, "grade", {**shown, "structured_cot": structured, "simple_cot": simple_cot}, tries)
    low = sorted(g for g in GRADES if grades[g] < MIN_GRADE)
    if low:
        raise Reject("grade", f"score below {MIN_GRADE}: " + ", ".join(f"{g}={grades[g]}" for g in low))
    return Draft(fields, mcq, structured, simple_cot, {g: grades[g] for g in GRADES})
