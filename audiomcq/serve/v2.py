"""The Open Inference Protocol (V2) form of a question: BYTES tensors in, answer/index/raw/scores tensors out.

Inputs, each BYTES with the batch as the first dimension: ``question`` [N]; ``audio`` [N] (base64 WAV, FLAC or
MP3 text; raw bytes cannot travel as BYTES JSON) or ``audio_url`` [N]; ``choices`` [N] of JSON lists
(``'["yes", "no"]'``) or [N, K] of strings. Outputs: ``answer`` BYTES [N], ``index`` INT64 [N], ``raw`` BYTES [N],
``scores`` FP32 [N, K], where K is the most choices of any question and missing scores are NaN (null in JSON), and
``answer_source`` BYTES [N]: ``generated`` when the reply named the answer, ``scored`` when the best score chose it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from audiomcq.serve.config import ServeConfig
from audiomcq.serve.inputs import Question, parse_instances
from audiomcq.serve.scoring import Answer

INPUTS = ("question", "choices", "audio", "audio_url")
INPUT_TYPES = [
    {"name": "question", "datatype": "BYTES", "shape": [-1]},
    {"name": "choices", "datatype": "BYTES", "shape": [-1, -1]},
    {"name": "audio", "datatype": "BYTES", "shape": [-1]},
    {"name": "audio_url", "datatype": "BYTES", "shape": [-1]},
]
OUTPUT_TYPES = [
    {"name": "answer", "datatype": "BYTES", "shape": [-1]},
    {"name": "index", "datatype": "INT64", "shape": [-1]},
    {"name": "raw", "datatype": "BYTES", "shape": [-1]},
    {"name": "scores", "datatype": "FP32", "shape": [-1, -1]},
    {"name": "answer_source", "datatype": "BYTES", "shape": [-1]},
]


def _string(name: str, value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"input '{name}': elements must be UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise InvalidInput(f"input '{name}': elements must be strings, not {type(value).__name__}")


def _tensors(request: InferRequest) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for tensor in request.inputs:
        if tensor.name not in INPUTS:
            raise InvalidInput(f"unknown input '{tensor.name}'; expected {list(INPUTS)}")
        if tensor.name in tensors:
            raise InvalidInput(f"input '{tensor.name}' is given twice")
        if tensor.datatype != "BYTES":
            raise InvalidInput(f"input '{tensor.name}' must be BYTES, not {tensor.datatype}")
        try:
            array = np.asarray(tensor.as_numpy(), dtype=object)
        except (ValueError, TypeError, IndexError, InvalidInput) as err:  # data that fits no shape
            raise InvalidInput(f"input '{tensor.name}': data does not fit shape {tensor.shape} ({err})") from None
        if array.ndim == 0 or array.shape[0] == 0:
            raise InvalidInput(
                f"input '{tensor.name}' must have the batch as its first dimension, shape {tensor.shape}"
            )
        tensors[tensor.name] = array
    return tensors


def _vector(tensors: dict[str, np.ndarray], name: str) -> list[str] | None:
    if name not in tensors:
        return None
    array = tensors[name]
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise InvalidInput(f"input '{name}' must have shape [N] or [N, 1], not {list(array.shape)}")
    return [_string(name, v) for v in array]


def _choices(tensors: dict[str, np.ndarray], n: int) -> list[Any]:
    if "choices" not in tensors:
        raise InvalidInput("input 'choices' is missing")
    array = tensors["choices"]
    if array.shape[0] != n:
        raise InvalidInput(f"input 'choices' has {array.shape[0]} rows for {n} questions")
    if array.ndim == 2 and array.shape[1] > 1:
        return [[_string("choices", v) for v in row] for row in array]
    rows = []
    for i, text in enumerate(_vector(tensors, "choices") or []):
        try:
            rows.append(json.loads(text))
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the json module's stack
            raise InvalidInput(f"instance {i}: 'choices' must be a JSON list of strings") from None
    return rows


def parse_v2(request: InferRequest, config: ServeConfig, forbidden: Sequence[str] = ()) -> list[Question]:
    """The questions in a V2 request (checked like V1 instances), or a 400 naming the tensor or the instance."""
    tensors = _tensors(request)
    questions = _vector(tensors, "question")
    if questions is None:
        raise InvalidInput("input 'question' is missing")
    n = len(questions)
    if n > config.max_instances:
        raise InvalidInput(f"{n} questions in one request; the limit is {config.max_instances}")
    choices = _choices(tensors, n)
    audio, urls = _vector(tensors, "audio"), _vector(tensors, "audio_url")
    for name, values in (("audio", audio), ("audio_url", urls)):
        if values is not None and len(values) != n:
            raise InvalidInput(f"input '{name}' has {len(values)} rows for {n} questions")
    instances = []
    for i in range(n):
        instance = {"question": questions[i], "choices": choices[i]}
        if audio is not None:
            instance["audio"] = audio[i]
        if urls is not None:
            instance["audio_url"] = urls[i]
        instances.append(instance)
    return parse_instances(instances, config, forbidden)


def v2_response(request: InferRequest, model_name: str, answers: Sequence[Answer]) -> InferResponse:
    """The answers as V2 output tensors, in the binary or JSON form the request asked for."""
    width = max(len(a.scores) for a in answers)
    scores = np.full((len(answers), width), np.nan, dtype=np.float32)
    for row, a in zip(scores, answers, strict=True):
        row[: len(a.scores)] = a.scores
    arrays = {
        "answer": np.array([a.answer.encode() for a in answers], dtype=np.object_),
        "index": np.array([a.index for a in answers], dtype=np.int64),
        "raw": np.array([a.raw.encode() for a in answers], dtype=np.object_),
        "scores": scores,
        "answer_source": np.array([a.answer_source.encode() for a in answers], dtype=np.object_),
    }
    outputs = []
    for spec in OUTPUT_TYPES:
        array = arrays[spec["name"]]
        output = InferOutput(name=spec["name"], shape=list(array.shape), datatype=spec["datatype"])
        output.set_data_from_numpy(array, binary_data=False)
        outputs.append(output)
    return InferResponse(
        response_id=request.id or str(uuid.uuid4()),
        model_name=model_name,
        infer_outputs=outputs,
        use_binary_outputs=request.use_binary_outputs,
        requested_outputs=request.request_outputs,
    )
