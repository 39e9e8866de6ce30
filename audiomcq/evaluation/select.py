"""Checkpoint selection: one rule, used by every entry point (``audiomcq select --run``, ``audiomcq select --evals``,
``audiomcq report``, ``grpo.init: sft@best``, and the pipelines' select steps).

The rule (``RULE``, applied by ``choose``): the highest accuracy with audio on the selection set (official MMAU
string match); ties go to the higher accuracy on its AC-strong subset (when the items carry AC labels), then to the
larger audio contribution (accuracy with audio minus in silence, when the silent control ran), then to the earliest
checkpoint: the base model before SFT before GRPO, then the lower step, then the name. A candidate without a number
a tie-break reads ranks below those with one; numbers within 1e-9 points of each other are equal.

``select --run`` evaluates every complete checkpoint of a post-training run on its selection set (the harness's
``synthetic`` task, with audio only) and picks one, recording why. The selection set is the run's
``data/selection.jsonl`` (position-balanced held-out questions, MMAU-test-mini-4k style, written by ``train run
--selection``) unless another is given. The per-checkpoint accuracies are also the run's accuracy-vs-step curves.
``select --evals`` and the demo pipeline pick among models already evaluated on the held-out split
(``select_evaluated``), with audio and in silence.

A run in S3 (``s3://…``) counts only the checkpoints and final models whose own upload completed: each such prefix
carries its own ``_COMPLETE`` marker, uploaded after every other file, so a checkpoint caught mid-upload (its
weights there, its marker not yet) is skipped, never scored. Each checkpoint's evaluation resumes like ``eval``
does, and one made by another model into the same ``--out`` is refused unless ``fresh``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.jsonio import load_json, write_json

log = logging.getLogger(__name__)
STAGES = ("sft", "grpo")
EARLIEST = ("base", *STAGES)  # the tie-break's order of stages
SELECTION_TASK = "synthetic"  # the harness task selection sets and the demo's held-out split are evaluated as
SCORES = ("accuracy", "ac_strong", "audio_contribution")  # what the rule reads, in the order it reads them
RULE = (
    "max selection-set accuracy with audio; tie-breaks: higher AC-strong accuracy, then larger audio contribution "
    "(with audio minus in silence), then the earliest checkpoint (base, sft, grpo; lower step; then name)"
)


def checkpoints(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's complete checkpoints and final models, in training order: ``{stage, step, path}``."""
    from audiomcq.train.common import COMPLETE

    run, found = Path(run_dir), []
    for order, stage in enumerate(STAGES):
        steps = [
            (int(p.name[11:]), p)
            for p in (run / stage).glob("checkpoint-*")
            if p.name[11:].isdigit() and (p / COMPLETE).is_file()
        ]
        found += [{"stage": stage, "order": order, "step": s, "path": str(p)} for s, p in sorted(steps)]
        final = run / stage / "final"
        if (final / "config.json").is_file() and not any(s == _final_step(final) for s, _ in steps):
            found.append({"stage": stage, "order": order, "step": _final_step(final), "path": str(final)})
    return found


def remote_checkpoints(uri: str, selection: bool = True) -> tuple[Path, list[dict[str, Any]]]:
    """Local copies of an S3 run's checkpoints and final models whose upload completed (their prefix's own
    ``_COMPLETE``), with its summary and, with ``selection``, its selection set: (local run folder, as
    ``checkpoints`` returns)."""
    from audiomcq.infra import storage

    uri = uri.rstrip("/")
    local = storage.cache_dir(uri) / "tree"  # where ``storage.local_tree`` keeps the run: paths stay relative to it
    found: list[dict[str, Any]] = []
    for name in ("summary.json", *(["data/selection.jsonl"] if selection else [])):
        with contextlib.suppress(AudioMCQError):  # absent: no summary (finals go last), or --data names the set
            storage.fetch(f"{uri}/{name}", (local / name).parent)
    for order, stage in enumerate(STAGES):
        steps = []
        for prefix in storage.subprefixes(f"{uri}/{stage}"):
            name = prefix.rsplit("/", 1)[-1]
            if not (name.startswith("checkpoint-") and name[11:].isdigit()):
                continue
            if not storage.is_complete(prefix):
                log.warning("select: %s skipped: its upload has not completed (no %s)", prefix, storage.COMPLETE)
                continue
            steps.append((int(name[11:]), storage.fetch_dir(prefix, local / stage / name)))
        found += [{"stage": stage, "order": order, "step": s, "path": str(p)} for s, p in sorted(steps)]
        if storage.is_complete(f"{uri}/{stage}/final"):
            final = storage.fetch_dir(f"{uri}/{stage}/final", local / stage / "final")
            if not any(s == _final_step(final) for s, _ in steps):
                found.append({"stage": stage, "order": order, "step": _final_step(final), "path": str(final)})
    return local, found


def _final_step(final: Path) -> int:
    """The global step a final model was saved at (from the run's summary), else a large number (last)."""
    summary = final.parents[1] / "summary.json"
    if summary.is_file():
        return int(load_json(summary).get(final.parent.name, {}).get("steps", 10**9))
    return 10**9


def select_run(
    run_dir: str | Path,
    audio_root: str | Path,
    out_dir: str | Path,
    data: str | Path | None = None,
    batch_size: int = 64,
    max_new_tokens: int = 256,
    fresh: bool = False,
) -> dict[str, Any]:
    """Evaluate each checkpoint on the selection set, pick one, write ``selection.json``; returns it."""
    from audiomcq.infra.storage import is_s3, local_tree

    audio_root = local_tree(audio_root)
    if is_s3(run_dir):
        run, found = remote_checkpoints(str(run_dir), selection=data is None)
    else:
        run = Path(run_dir)
        found = checkpoints(run)
    selection = Path(data) if data else run / "data" / "selection.jsonl"
    if not found:
        raise AudioMCQError(f"{run_dir}: no complete checkpoints or final models under sft/ or grpo/")
    result = {"run": str(run_dir), **rank(found, selection, audio_root, out_dir, batch_size, max_new_tokens, fresh)}
    write_json(Path(out_dir) / "selection.json", result)
    return result


def rank(
    found: list[dict[str, Any]],
    selection: str | Path,
    audio_root: str | Path,
    out_dir: str | Path,
    batch_size: int = 64,
    max_new_tokens: int = 256,
    fresh: bool = False,
) -> dict[str, Any]:
    """Evaluate the checkpoints ``found`` (``{stage, step, path}``) on ``selection`` and pick one by ``RULE``: the
    selected one, why, every candidate's scores and the curves."""
    from audiomcq.evaluation.harness import EvalConfig, evaluate_task, lazy_engine
    from audiomcq.evaluation.tasks import get_task

    selection = Path(selection)
    if not selection.is_file():
        raise AudioMCQError(f"{selection}: no selection set (build one with `train run --selection`, or pass --data)")
    out = Path(out_dir)
    config = EvalConfig(batch_size=batch_size, max_new_tokens=max_new_tokens, silent_control=False)
    for ckpt in found:
        engine = lazy_engine(ckpt["path"], batch_size)
        where = out / f"{ckpt['stage']}-{ckpt['step']}"
        metrics = evaluate_task(engine, get_task(SELECTION_TASK), selection, audio_root, where, config, fresh=fresh)
        ckpt.update(name=f"{ckpt['stage']} step {ckpt['step']}", **scores(metrics))
        log.info("select: %s -> %.1f%%", ckpt["name"], ckpt["accuracy"])
    best = choose(found)
    return {
        "selection_set": str(selection),
        "selected": {k: best[k] for k in ("stage", "step", "path", "accuracy")},
        "rule": RULE,
        "why": why(best, found),
        "candidates": [{k: c[k] for k in ("stage", "step", "path", *SCORES)} for c in found],
        "curves": {s: [[c["step"], c["accuracy"]] for c in found if c["stage"] == s] for s in STAGES},
    }


def checkpoint_of(name: str, path: str | Path) -> dict[str, Any]:
    """``{stage, step}`` of an evaluated model named ``base`` or ``<paradigm>/<stage>`` (a run's final model, whose
    step the run's summary records)."""
    if name == "base":
        return {"stage": "base", "step": 0}
    return {"stage": name.rpartition("/")[2], "step": _final_step(Path(path))}


def select_evaluated(metrics_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """Pick by ``RULE`` among evaluated models: each directory's ``metrics.json`` maps a name to its ``audiomcq
    eval`` summary (``SELECTION_TASK`` scored) with its checkpoint's ``stage`` and ``step``, as the post-training
    pipeline's evaluate step writes it. Returns the selected name and model, its scores, why, and every candidate."""
    found = []
    for d in metrics_dirs:
        for name, summary in load_json(Path(d) / "metrics.json").items():
            metrics = (summary.get("tasks") or {}).get(SELECTION_TASK)
            if metrics is None or "stage" not in summary:
                what = f"no {SELECTION_TASK} evaluation with its checkpoint's stage and step"
                raise AudioMCQError(f"{d}/metrics.json: {name!r} has {what} (evaluate it again)")
            where = {"name": name, "model": summary["model"], "stage": summary["stage"], "step": summary["step"]}
            found.append({**where, **scores(metrics)})
    if not found:
        raise AudioMCQError(f"no evaluated checkpoints to select from in {', '.join(map(str, metrics_dirs))}")
    best = choose(found)
    return {
        "selected": best["name"],
        "model": best["model"],
        **{k: best[k] for k in SCORES},
        "rule": RULE,
        "why": why(best, found),
        "candidates": [{k: c[k] for k in ("name", "stage", "step", *SCORES)} for c in found],
    }


def scores(metrics: dict[str, Any]) -> dict[str, float | None]:
    """What ``RULE`` reads from one task's harness metrics: the accuracy with audio (official rule), the AC-strong
    subset's accuracy and the audio contribution; None where it was not measured."""
    audio = metrics["modes"]["audio"]
    strong = audio.get("ac_strong") or {}
    return {
        "accuracy": audio["total"]["accuracy"],
        "ac_strong": strong["accuracy"] if strong.get("count") else None,
        "audio_contribution": metrics.get("audio_contribution"),
    }


def choose(candidates: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The candidate ``RULE`` selects; each carries ``SCORES`` (None: not measured), ``stage``, ``step`` and
    ``name``."""
    return min(candidates, key=_order)


def _order(c: dict[str, Any]) -> tuple[Any, ...]:
    """The rule as a sort key: scores high to low, then the earliest checkpoint."""
    return (*(-_number(c.get(k)) for k in SCORES), EARLIEST.index(c["stage"]), c["step"], c["name"])


def _number(value: float | None) -> float:
    """A score as the rule compares it: rounded to 1e-9 points, a missing one lowest."""
    return float("-inf") if value is None else round(float(value), 9)


def why(best: dict[str, Any], candidates: Sequence[dict[str, Any]]) -> str:
    """How ``RULE`` picked ``best``: its accuracy, its lead, and which tie-break set each tied candidate aside."""
    text = f"{best['name']} scored {best['accuracy']:.1f}%"
    lower = [c["accuracy"] for c in candidates if _number(c["accuracy"]) < _number(best["accuracy"])]
    if lower:
        text += f", {best['accuracy'] - max(lower):.1f} points above the next best"
    tied = [c for c in candidates if c is not best and _number(c["accuracy"]) == _number(best["accuracy"])]
    for key, label in (("ac_strong", "AC-strong accuracy"), ("audio_contribution", "audio contribution")):
        beaten = [c for c in tied if _number(c.get(key)) < _number(best.get(key))]
        if beaten:
            known = [c[key] for c in beaten if c.get(key) is not None]
            against = f"{max(known):.1f}" if known else "none measured"
            names = ", ".join(c["name"] for c in beaten)
            text += f"; tied with {names}: the higher {label} decided ({best[key]:.1f} vs {against})"
        tied = [c for c in tied if _number(c.get(key)) == _number(best.get(key))]
    if tied:
        text += f"; tied on every score with {', '.join(c['name'] for c in tied)}: the earliest checkpoint was kept"
    return text
