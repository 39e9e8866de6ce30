"""The smoke check a new revision must pass before it takes all the traffic: held-out questions with known answers.

A model that loads and answers in the right shape can still be the wrong model: randomly initialised weights, a
checkpoint whose audio encoder was not loaded, a processor that drops the clip. The predictor always names one of
the choices, so "the answer names a choice" cannot tell those apart from a trained model. This check can:

- **the set**: up to ``size`` records of the held-out (or checkpoint-selection) records whose audio exists, in a
  fixed pseudo-random order (sha256 of the record id), so every candidate served from the same data is asked the
  same questions and the set is a uniform sample, not the file's first (often one-source) lines;
- **the questions** go through the V1 route real clients use (``audiomcq.serve.request_body`` to
  ``/v1/models/<name>:predict``), each once with its audio and, for the audio-dependent items (``audio-contribution:
  strong``, or every item when the data carries no labels), once more with a silent clip of the same length, rate
  and channels;
- **(a) accuracy**: the right answers with audio must reach the pass mark derived from the accuracy the evaluation
  reported for this checkpoint on the same kind of data (``pass_mark``);
- **(b) listening**: on the audio-dependent items, the answers with audio must be right more often than the
  answers in silence. A model that does not hear the clip answers the same either way and ties; a model that
  knows the answers from the text alone ties at the top.

An answer that names no choice, an HTTP error or a reply that is not V1 JSON stops the check at once: the revision
does not answer in the expected shape, and asking the rest would only repeat that.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)
EPSILON = 1e-9  # points: float rounding, not a real difference


@dataclass(frozen=True)
class SmokeSettings:
    """How large and how strict the smoke check is (accuracies and tolerances in percentage points).

    ``size`` 32: with the binomial pass mark at 99%, a model evaluated at 70% passes from 50% (16/32) up, while a
    model answering at chance (25% on four choices) gets there with probability 0.2%; with the silent twins that
    is at most 64 sequential requests to the revision.
    ``min_size`` 16: there the pass mark for a model evaluated at 70% is already down to 44% (7/16), which a
    model at chance reaches 8% of the time; with fewer questions the check could not tell a trained model from
    an untrained one, so it refuses to run instead of passing anything.
    ``min_listening`` 8: a listening model fails (b) only if silence does as well as the audio by chance; with
    fewer audio-dependent items that chance stops being small.
    ``tolerance`` None: derived per check from the binomial bound at ``confidence`` (see ``pass_mark``); a number
    fixes it instead. ``task``: the evaluated task whose accuracy is the reference (None: the candidate's only
    scored task, else the only decisive benchmark).
    """

    size: int = 32
    min_size: int = 16
    min_listening: int = 8
    tolerance: float | None = None
    confidence: float = 0.99
    task: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_size <= self.size:
            raise AudioMCQError(f"smoke set: min size {self.min_size} must be between 1 and the size {self.size}")
        if self.min_listening < 1:
            raise AudioMCQError(f"smoke set: min listening items {self.min_listening} must be at least 1")
        if not 0 < self.confidence < 1:
            raise AudioMCQError(f"smoke confidence {self.confidence} must be between 0 and 1 (exclusive)")
        if self.tolerance is not None and not 0 <= self.tolerance <= 100:
            raise AudioMCQError(f"smoke tolerance {self.tolerance} must be between 0 and 100 points")


@dataclass(frozen=True)
class Question:
    """One smoke question with its audio; ``scored``: counts towards (a); ``listening``: asked in silence too."""

    id: str
    question: str
    choices: list[str]
    answer: str
    wav: bytes
    scored: bool = True
    listening: bool = False


@dataclass(frozen=True)
class SmokeSet:
    """The questions and where they came from; ``labelled``: the data marks audio-dependent items."""

    questions: list[Question]
    data: str
    labelled: bool


@dataclass
class SmokeResult:
    """The outcome: ``ok``, one line saying why (``detail``), each check (``reasons``) and the numbers."""

    ok: bool
    detail: str
    reasons: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _order(record_id: str) -> str:
    return hashlib.sha256(record_id.encode()).hexdigest()


def _strong(value: str | None) -> bool:
    return (value or "").strip().lower() == "strong"


def pick_set(data: str | Path, audio_root: str | Path | None, settings: SmokeSettings) -> SmokeSet:
    """The smoke questions from ``data`` (records, local or ``s3://``) whose audio exists under ``audio_root``.

    The first ``size`` in sha256-of-id order are scored; their audio-dependent items are asked in silence too,
    topped up with further audio-dependent records (asked, not scored) when fewer than ``min_listening``. Refuses
    with one line when the data cannot give ``min_size`` scored or ``min_listening`` audio-dependent items."""
    from audiomcq.data.io import read_records
    from audiomcq.infra import storage

    with tempfile.TemporaryDirectory(prefix="audiomcq-smoke-") as tmp:
        records = [r for r in read_records(storage.fetch(data, tmp)) if r.audio_path]
        labelled = any(r.audio_contribution for r in records)
        questions: list[Question] = []
        scored_n = listening = 0
        for record in sorted(records, key=lambda r: _order(r.id)):
            scored = scored_n < settings.size
            hears = not labelled or _strong(record.audio_contribution)
            if not scored and listening >= settings.min_listening:
                break
            if not scored and not hears:  # past the scored sample: only audio-dependent items to top up (b)
                continue
            wav = _audio(record, audio_root, Path(tmp))
            if wav is None:
                continue
            questions.append(
                Question(record.id, record.question, list(record.choices), record.answer, wav, scored, hears)
            )
            scored_n += scored
            listening += hears
    kind = "labelled audio-contribution: strong" if labelled else "with audio"
    if scored_n < settings.min_size:
        raise AudioMCQError(
            f"smoke set: {data} has {scored_n} records whose audio exists under {audio_root}; the "
            f"smoke check needs at least {settings.min_size} (smoke min size)"
        )
    if listening < settings.min_listening:
        raise AudioMCQError(
            f"smoke set: {data} has {listening} records {kind} whose audio exists under "
            f"{audio_root}; the silence check needs at least {settings.min_listening} "
            "(smoke min listening)"
        )
    log.info("smoke set: %d scored questions, %d asked in silence too, from %s", scored_n, listening, data)
    return SmokeSet(questions, str(data), labelled)


def _audio(record: Any, audio_root: str | Path | None, tmp: Path) -> bytes | None:
    """The record's audio file's bytes, or None when it is not there."""
    from audiomcq.data.record import resolve_audio
    from audiomcq.infra import storage

    if audio_root is not None and storage.is_s3(audio_root):
        uri = f"{str(audio_root).rstrip('/')}/{record.audio_path}"
        try:
            return storage.fetch(uri, tmp / "audio").read_bytes()
        except AudioMCQError as err:
            log.warning("smoke: %s: %s", record.id, err)
            return None
    path = resolve_audio(record, audio_root or ".")
    return path.read_bytes() if path is not None and path.is_file() else None


def silence_like(wav: bytes) -> bytes:
    """A silent WAV with the clip's length, sample rate and channels: what the model hears is only the absence."""
    import numpy as np
    import soundfile as sf

    info = sf.info(io.BytesIO(wav))
    out = io.BytesIO()
    sf.write(out, np.zeros((info.frames, info.channels), np.float32), info.samplerate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def pass_mark(reference: float, n: int, confidence: float) -> int:
    """The fewest right answers out of ``n`` that a model whose accuracy is ``reference`` (points) reaches with
    probability at least ``confidence``: the lower quantile of Binomial(n, reference/100).

    Why a binomial bound: with a few dozen questions the observed accuracy is noisy (at n = 32 and 70% its
    standard deviation is 8 points), so a fixed tolerance either rolls back good models or passes bad ones. Each
    question is treated as an independent draw at the evaluated accuracy; when the smoke set is a sample of the
    evaluated items themselves (as in the pipeline) the draws vary less than that, so the bound is conservative.
    The evaluation's own sampling noise is not in it: when the smoke data differs from the evaluated data, widen
    the check with a fixed tolerance."""
    p = min(max(reference / 100.0, 0.0), 1.0)
    below = 0.0  # P(X < k)
    for k in range(n + 1):
        below += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if below > 1 - confidence:  # P(X <= k) exceeds what may fail: k right answers must still pass
            return k
    return n


def pass_probability(reference: float, n: int, mark: int) -> float:
    """P(X >= mark) for X ~ Binomial(n, reference/100): how likely a model at its evaluated accuracy passes."""
    p = min(max(reference / 100.0, 0.0), 1.0)
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(mark, n + 1))


def _names_choice(answer: str, choices: list[str]) -> bool:
    from audiomcq.scoring import string_match

    return answer.strip() in choices or any(string_match(c, answer, choices) for c in choices)


def _right(answer: str, q: Question) -> bool:
    from audiomcq.scoring import string_match

    return answer.strip() == q.answer or string_match(q.answer, answer, q.choices)


class _Failed(Exception):
    """A reply the check cannot score; the message says what came back."""


def _ask(endpoint: str, q: Question, wav: bytes, timeout: float, retries: int) -> str:
    """The revision's answer to ``q`` with ``wav``; raises ``_Failed`` on anything but a V1 answer naming a choice."""
    from audiomcq.infra.http import HTTPFailure, post_json
    from audiomcq.serve import request_body

    headers = {"Content-Type": "application/json"}
    body = request_body(wav, q.question, q.choices)
    try:
        reply = post_json(endpoint, body, headers, timeout=timeout, retries=retries, max_wait=10.0)
    except HTTPFailure as err:
        raise _Failed(f"smoke query {q.id} failed: {err}") from None
    except (ValueError, OSError, http.client.HTTPException) as err:  # a 200 that is not JSON (an ingress page), a cut
        raise _Failed(f"smoke query {q.id}: {endpoint} gave no JSON answer ({type(err).__name__}: {err})") from None
    try:
        answer = reply["predictions"][0]["answer"]
    except (KeyError, IndexError, TypeError):
        raise _Failed(f"smoke query {q.id}: {endpoint} answered {str(reply)[:200]!r}, not V1 predictions") from None
    if not isinstance(answer, str):
        raise _Failed(f"smoke query {q.id}: the answer {answer!r} is not a string")
    if not _names_choice(answer, q.choices):
        raise _Failed(f"smoke query {q.id} ({q.question!r}): answer {answer!r} names none of {q.choices}")
    return answer


def run_smoke(
    url: str,
    model: str,
    smoke_set: SmokeSet,
    reference: float,
    task: str,
    settings: SmokeSettings,
    timeout: float = 60.0,
    retries: int = 2,
) -> SmokeResult:
    """Ask ``smoke_set`` at ``<url>/v1/models/<model>:predict`` and judge (a) and (b) against ``reference``, the
    evaluated accuracy on ``task``. Never raises on what the revision sends: the gate must roll back, not crash."""
    endpoint = f"{url.rstrip('/')}/v1/models/{model}:predict"
    rows: list[dict[str, Any]] = []
    try:
        for q in smoke_set.questions:
            answer = _ask(endpoint, q, q.wav, timeout, retries)
            row: dict[str, Any] = {
                "id": q.id,
                "scored": q.scored,
                "listening": q.listening,
                "answer": answer,
                "right": _right(answer, q),
            }
            if q.listening:
                quiet = _ask(endpoint, q, silence_like(q.wav), timeout, retries)
                row |= {"silence_answer": quiet, "silence_right": _right(quiet, q)}
            rows.append(row)
    except _Failed as err:
        return SmokeResult(False, str(err), [f"FAIL: {err}"], {"endpoint": endpoint, "data": smoke_set.data}, rows)
    return judge(rows, reference, task, settings, endpoint, smoke_set)


def judge(
    rows: list[dict[str, Any]],
    reference: float,
    task: str,
    settings: SmokeSettings,
    endpoint: str,
    smoke_set: SmokeSet,
) -> SmokeResult:
    """Checks (a) and (b) on the answers (``run_smoke``'s rows)."""
    scored = [r for r in rows if r["scored"]]
    heard = [r for r in rows if r["listening"]]
    if not scored or not heard:  # pick_set refuses such sets; a caller building its own gets a failure, not a pass
        why = f"nothing to judge: {len(scored)} scored answers, {len(heard)} asked in silence"
        return SmokeResult(False, why, [f"FAIL: {why}"], {"endpoint": endpoint, "data": smoke_set.data}, rows)
    n, right = len(scored), sum(r["right"] for r in scored)
    accuracy = 100.0 * right / n
    if settings.tolerance is None:
        mark = pass_mark(reference, n, settings.confidence)
        tolerance, source = reference - 100.0 * mark / n, f"binomial bound at {settings.confidence:g}"
    else:
        tolerance, source = settings.tolerance, "fixed"
        mark = max(0, math.ceil(n * (reference - tolerance) / 100.0 - EPSILON))
    needed = 100.0 * mark / n
    accurate = right >= mark
    chance = pass_probability(reference, n, mark)
    sign = ">=" if accurate else "<"
    text_a = (
        f"accuracy with audio {accuracy:.1f}% ({right}/{n}) {sign} pass mark {needed:.1f}% (evaluated "
        f"{reference:.1f}% on {task} - tolerance {tolerance:.1f}, {source}; a model at its evaluated accuracy "
        f"passes with probability {chance:.3f})"
    )
    m = len(heard)
    with_audio = sum(r["right"] for r in heard)
    in_silence = sum(r["silence_right"] for r in heard)
    listens = with_audio > in_silence
    which = "audio-dependent (audio-contribution: strong)" if smoke_set.labelled else "(unlabelled: all)"
    text_b = (
        f"on {m} {which} items: with audio {100.0 * with_audio / m:.1f}% ({with_audio}/{m}), in silence "
        f"{100.0 * in_silence / m:.1f}% ({in_silence}/{m})"
    )
    text_b += "" if listens else ": silence answers as well as audio, the served model is not listening"
    reasons = [("ok: " if accurate else "FAIL: ") + text_a, ("ok: " if listens else "FAIL: ") + text_b]
    failed = [r[6:] for r in reasons if r.startswith("FAIL: ")]
    ok = not failed
    said = "; ".join(failed) if failed else f"{text_a}; {text_b}"
    detail = f"smoke check on {n} held-out questions from {smoke_set.data}: {said}"
    numbers = {
        "endpoint": endpoint,
        "data": smoke_set.data,
        "task": task,
        "items": n,
        "right": right,
        "accuracy": accuracy,
        "evaluated_accuracy": reference,
        "tolerance": tolerance,
        "tolerance_source": source,
        "pass_mark": needed,
        "pass_probability": chance,
        "labelled": smoke_set.labelled,
        "listening_items": m,
        "listening_accuracy_audio": 100.0 * with_audio / m,
        "listening_accuracy_silence": 100.0 * in_silence / m,
    }
    return SmokeResult(ok, detail, reasons, numbers, rows)
