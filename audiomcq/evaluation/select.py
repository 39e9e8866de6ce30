"""``audiomcq select --run``: evaluate every complete checkpoint of a post-training run on its selection set and
pick the best, recording why.

The selection set is the run's ``data/selection.jsonl`` (position-balanced held-out questions, MMAU-test-mini-4k
style, written by ``train run --selection``) unless another is given. Rule: the highest accuracy (official MMAU
string match, with audio); ties go to the earliest checkpoint (SFT before GRPO, then the lower step): it reached
the same score with less training. The per-checkpoint accuracies are also the run's accuracy-vs-step curves.

A run in S3 (``s3://…``) counts only the checkpoints and final models whose own upload completed: each such prefix
carries its own ``_COMPLETE`` marker, uploaded after every other file, so a checkpoint caught mid-upload (its
weights there, its marker not yet) is skipped, never scored. Each checkpoint's evaluation resumes like ``eval``
does, and one made by another model into the same ``--out`` is refused unless ``fresh``.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.jsonio import load_json, write_json

log = logging.getLogger(__name__)
STAGES = ("sft", "grpo")
RULE = "max selection-set accuracy with audio; tie-break: earliest checkpoint (sft before grpo, then lower step)"


def checkpoints(run_dir: str | Path) -> list[dict[str, Any]]:
    """The run's complete checkpoints and final models, in training order: ``{stage, step, path}``."""
    from audiomcq.train.common import COMPLETE

    run, found = Path(run_dir), []
    for order, stage in enumerate(STAGES):
        steps = [(int(p.name[11:]), p) for p in (run / stage).glob("checkpoint-*")
                 if p.name[11:].isdigit() and (p / COMPLETE).is_file()]  # fmt: skip
        found += [{"stage": stage, "order": order, "step": s, "path": str(p)} for s, p in sorted(steps)]
        final = run / stage / "final"
        if (final / "config.json").is_file() and not any(s == _final_step(final) for s, _ in steps):
            found.append({"stage": stage, "order": order, "step": _final_step(final), "path": str(final)})
    return found


def remote_checkpoints(uri: str, selection: bool = True) -> tuple[Path, list[dict[str, Any]]]:
    """Local copies of an S3 run's checkpoints and final models whose upload completed (their prefix's own
    ``_COMPLETE``), with its summary and, with ``selection``, its selection set: (local run folder, as
    ``checkpoints`` returns)."""
    from audiomcq import storage

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
    from audiomcq.storage import is_s3, local_tree

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
    """Evaluate the checkpoints ``found`` (``{stage, order, step, path}``) on ``selection`` and pick one by ``RULE``:
    the selected one, why, every candidate's accuracy and the curves."""
    from audiomcq.evaluation.harness import EvalConfig, evaluate_task, lazy_engine
    from audiomcq.evaluation.tasks import get_task

    selection = Path(selection)
    if not selection.is_file():
        raise AudioMCQError(f"{selection}: no selection set (build one with `train run --selection`, or pass --data)")
    out = Path(out_dir)
    config = EvalConfig(batch_size=batch_size, max_new_tokens=max_new_tokens, silent_control=False)
    for ckpt in found:
        engine = lazy_engine(ckpt["path"], batch_size)
        metrics = evaluate_task(engine, get_task("synthetic"), selection, audio_root,
                                out / f"{ckpt['stage']}-{ckpt['step']}", config, fresh=fresh)  # fmt: skip
        audio = metrics["modes"]["audio"]
        ckpt["accuracy"] = audio["total"]["accuracy"]
        strong = audio["breakdown"].get("audio-contribution", {}).get("strong")  # labelled selection sets
        ckpt["ac_strong"] = strong["accuracy"] if strong else None
        log.info("select: %s step %d -> %.1f%%", ckpt["stage"], ckpt["step"], ckpt["accuracy"])
    best = min(found, key=lambda c: (-c["accuracy"], c["order"], c["step"]))
    return {
        "selection_set": str(selection),
        "selected": {k: best[k] for k in ("stage", "step", "path", "accuracy")},
        "rule": RULE,
        "why": _why(best, found),
        "candidates": [{k: c[k] for k in ("stage", "step", "path", "accuracy", "ac_strong")} for c in found],
        "curves": {s: [[c["step"], c["accuracy"]] for c in found if c["stage"] == s] for s in STAGES},
    }


def _why(best: dict[str, Any], found: list[dict[str, Any]]) -> str:
    tied = [c for c in found if c["accuracy"] == best["accuracy"]]
    runner = max((c["accuracy"] for c in found if c["accuracy"] < best["accuracy"]), default=None)
    text = f"{best['stage']} step {best['step']} scored {best['accuracy']:.1f}%"
    if runner is not None:
        text += f", {best['accuracy'] - runner:.1f} points above the next best"
    if len(tied) > 1:
        text += f"; {len(tied)} checkpoints tied and the earliest was kept"
    return text
