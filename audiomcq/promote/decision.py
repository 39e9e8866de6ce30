"""Whether a candidate model should replace the production one, from their ``audiomcq eval`` metrics.

Input: ``metrics.json`` files as ``audiomcq eval`` writes them, either the run's summary (``{"model", "tasks":
{task: metrics}}``) or one task's (``{"task", "modes": {"audio": {"total", "strict", "ac_strong", …}}, …}``),
local or ``s3://``. The rule, each part a check with its reason:

- every decisive benchmark was scored for the candidate (and, with a baseline, on as many items as the baseline);
- absolute floors (``task`` or ``task:metric`` -> minimum) hold;
- with a production model: the decisive metric (mean over the decisive benchmarks) beats the baseline's by at
  least ``margin`` points (and by more than zero: a tie keeps production), and on each decisive benchmark the
  AC-strong subset, scored for both on as many items, drops by no more than ``ac_strong_tolerance`` points — the
  questions that need the audio are what this work is about, and a gain on the full set can hide a loss there.
  Comparisons allow ``EPSILON`` for float rounding;
- without one: the floors alone decide.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)
METRICS = ("accuracy", "strict", "ac_strong", "audio_contribution")
EPSILON = 1e-9  # points: differences below this are float rounding, not a real gain or drop


@dataclass(frozen=True)
class Criteria:
    """What a candidate must show (accuracies in percentage points)."""

    benchmarks: tuple[str, ...] = ()  # decisive tasks; empty: every task scored for the candidate (and baseline)
    metric: str = "accuracy"  # one of METRICS
    margin: float = 0.0
    ac_strong_tolerance: float = 0.0
    floors: dict[str, float] = field(default_factory=dict)  # "task" or "task:metric" -> minimum

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise AudioMCQError(f"unknown decision metric {self.metric!r}; known: {', '.join(METRICS)}")
        if self.margin < 0 or self.ac_strong_tolerance < 0:
            raise AudioMCQError("margin and AC-strong tolerance are points of accuracy and cannot be negative")
        for key in self.floors:
            metric = key.partition(":")[2]
            if metric and metric not in METRICS:
                raise AudioMCQError(f"floor {key!r}: unknown metric {metric!r}; known: {', '.join(METRICS)}")


@dataclass
class Decision:
    """The verdict and every check behind it (``reasons`` in the order they were made). ``smoke``: the gate's
    smoke check of the served revision (``smoke.SmokeResult.to_dict``), once it ran; its checks are reasons too,
    and a failed one turns the verdict to keep production."""

    promote: bool
    reasons: list[str]
    candidate: dict[str, dict[str, float | None]]
    baseline: dict[str, dict[str, float | None]] | None
    criteria: dict[str, Any]
    sources: dict[str, list[str]]
    smoke: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_metrics(uris: Sequence[str | Path]) -> dict[str, dict[str, Any]]:
    """Per-task metrics from one or more ``metrics.json`` files (local or ``s3://``): ``{task: metrics}``."""
    from audiomcq.infra.storage import fetch
    from audiomcq.jsonio import load_json

    tasks: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="audiomcq-metrics-") as tmp:
        for n, uri in enumerate(uris):
            doc = load_json(fetch(uri, Path(tmp) / str(n)))
            for name, metrics in _tasks_of(doc, str(uri)).items():
                if name in tasks:
                    raise AudioMCQError(f"{uri}: task {name!r} is also in another metrics file; give each task once")
                tasks[name] = metrics
    return tasks


def _tasks_of(doc: Any, where: str) -> dict[str, dict[str, Any]]:
    if isinstance(doc, dict) and isinstance(doc.get("tasks"), dict):
        return {str(k): v for k, v in doc["tasks"].items()}
    if isinstance(doc, dict) and isinstance(doc.get("modes"), dict) and doc.get("task"):
        return {str(doc["task"]): doc}
    raise AudioMCQError(f"{where}: not an `audiomcq eval` metrics file (expected 'tasks', or 'task' and 'modes')")


def summarize(tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """The numbers a decision reads, per task: accuracy (official), strict, AC-strong, audio contribution, items."""
    out: dict[str, dict[str, float | None]] = {}
    for name, m in tasks.items():
        audio = (m.get("modes") or {}).get("audio") or {}
        total = audio.get("total")
        if not total:  # hidden answers (mmau-test): nothing scored here
            continue
        out[name] = {
            "accuracy": float(total["accuracy"]),
            "strict": float(audio["strict"]["accuracy"]) if "strict" in audio else None,
            "ac_strong": float(audio["ac_strong"]["accuracy"]) if audio.get("ac_strong") else None,
            "ac_strong_count": float(audio["ac_strong"]["count"]) if audio.get("ac_strong") else None,
            "audio_contribution": float(m["audio_contribution"]) if "audio_contribution" in m else None,
            "items": float(m.get("items", total.get("count", 0))),
        }
    return out


def decide(
    candidate: dict[str, dict[str, Any]],
    baseline: dict[str, dict[str, Any]] | None,
    criteria: Criteria | None = None,
    sources: dict[str, list[str]] | None = None,
) -> Decision:
    """Compare per-task metrics (``load_metrics`` output) under ``criteria``."""
    criteria = criteria or Criteria()
    cand = summarize(candidate)
    base = summarize(baseline) if baseline is not None else None
    checks: list[tuple[bool, str]] = []
    decisive = list(criteria.benchmarks) or sorted(t for t in cand if base is None or t in base)
    if not decisive:
        checks.append((False, "no benchmark scored for the candidate" + (" and the baseline" if base else "")))
    for task in decisive:
        if _value(cand, task, criteria.metric) is None:
            checks.append((False, f"candidate has no {criteria.metric} on {task}"))
    checks += _floors(cand, criteria.floors)
    if base is None:
        note = "the absolute floors decide" if criteria.floors else "no floors are configured, so nothing blocks it"
        checks.append((True, f"no production model to compare with: {note}"))
    elif all(ok for ok, _ in checks):
        checks += _against(cand, base, decisive, criteria)
    promote = all(ok for ok, _ in checks)
    reasons = [("ok: " if ok else "FAIL: ") + text for ok, text in checks]
    log.info("promotion decision: %s", "promote" if promote else "keep production")
    return Decision(promote, reasons, cand, base, {**asdict(criteria), "benchmarks": decisive}, sources or {})


def _value(table: dict[str, dict[str, float | None]], task: str, metric: str) -> float | None:
    return table.get(task, {}).get(metric)


def _floors(cand: dict[str, dict[str, float | None]], floors: dict[str, float]) -> list[tuple[bool, str]]:
    checks = []
    for key, floor in floors.items():
        task, _, metric = key.partition(":")
        value = _value(cand, task, metric or "accuracy")
        if value is None:
            checks.append((False, f"floor {key}: the candidate has no {metric or 'accuracy'} on {task}"))
        else:
            verdict = ">=" if value >= floor else "<"
            checks.append((value >= floor, f"{task} {metric or 'accuracy'} {value:.2f} {verdict} floor {floor:.2f}"))
    return checks


def _against(
    cand: dict[str, dict[str, float | None]],
    base: dict[str, dict[str, float | None]],
    decisive: Iterable[str],
    criteria: Criteria,
) -> list[tuple[bool, str]]:
    checks: list[tuple[bool, str]] = []
    pairs = []
    for task in decisive:
        c, b = _value(cand, task, criteria.metric), _value(base, task, criteria.metric)
        if b is None:
            checks.append((False, f"the production model has no {criteria.metric} on {task}: not comparable"))
            continue
        if cand[task]["items"] != base[task]["items"]:
            counts = f"candidate scored on {cand[task]['items']:.0f} items, production on {base[task]['items']:.0f}"
            checks.append((False, f"{task}: {counts}: not comparable"))
            continue
        pairs.append((task, c, b))
    if checks:
        return checks
    c_mean = sum(c for _, c, _ in pairs) / len(pairs)  # type: ignore[misc]
    b_mean = sum(b for _, _, b in pairs) / len(pairs)  # type: ignore[misc]
    delta = c_mean - b_mean
    label = pairs[0][0] if len(pairs) == 1 else f"mean over {', '.join(t for t, _, _ in pairs)}"
    beats = delta > EPSILON and delta >= criteria.margin - EPSILON  # 1.4 - 0.4 is 0.9999999999999999
    need = f"needs > 0 and >= margin {criteria.margin:.2f}"
    text = f"{label} {criteria.metric}: candidate {c_mean:.2f} vs production {b_mean:.2f} ({delta:+.2f}; {need})"
    checks.append((beats, text))
    for task, _, _ in pairs:  # the decisive benchmarks only: the others are not what this decision is about
        c, b = cand[task]["ac_strong"], base[task]["ac_strong"]
        if c is None or b is None:
            continue
        c_n, b_n = cand[task]["ac_strong_count"], base[task]["ac_strong_count"]
        if c_n != b_n:
            counts = f"candidate scored {c_n:.0f} items, production {b_n:.0f}"
            checks.append((False, f"{task} AC-strong subset: {counts}: different subsets are not comparable"))
            continue
        holds = c >= b - criteria.ac_strong_tolerance - EPSILON
        allowed = f"may drop at most {criteria.ac_strong_tolerance:.2f}"
        text = f"{task} AC-strong subset: candidate {c:.2f} vs production {b:.2f} ({c - b:+.2f}; {allowed})"
        checks.append((holds, text))
    return checks


def write_decision(decision: Decision, path: str | Path) -> Path:
    """The decision as JSON (atomically)."""
    from audiomcq.jsonio import write_json

    write_json(Path(path), decision.to_dict())
    return Path(path)
