"""Where a paradigm's GRPO stage starts: the recipe's ``grpo.init``.

The paper does not start GRPO from the last SFT step: it evaluates SFT checkpoints on the position-balanced
selection set and starts GRPO from the chosen one (step 750 for Weak-to-Strong, 1000 for Mixed-to-Strong).
``grpo.init`` says which:

- ``sft@best``: every complete SFT checkpoint (and the final model) on the run's selection set, the best by the
  selection rule (``audiomcq.evaluation.select.RULE``);
- ``sft@STEP``: the complete SFT checkpoint of that step;
- ``sft@final``: the model SFT ended with.

A paradigm without an SFT stage (All-Data GRPO) starts from the base model whatever ``init`` says. The choice and
the reason are recorded in the run summary (``grpo_init``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)
DEFAULT = "sft@final"
_SPEC = re.compile(r"sft@(best|final|\d+)")


def parse_init(spec: str | None) -> str:
    """The validated ``grpo.init`` value (``sft@best``, ``sft@final`` or ``sft@STEP``)."""
    spec = str(spec or DEFAULT).strip()
    if not _SPEC.fullmatch(spec):
        raise AudioMCQError(f"grpo.init must be sft@best, sft@final or sft@STEP (a step number), not {spec!r}")
    return spec


def choose_start(
    spec: str,
    base: str,
    sft: dict[str, Any] | None,
    selection: Path | None,
    audio_root: str | Path,
    out_dir: str | Path,
    eval_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The model GRPO starts from, as ``{"init", "path", "stage", "step", "why"}`` (plus the candidates' accuracies
    for ``sft@best``). ``sft`` is the SFT stage's summary (None when the paradigm has no SFT stage); its
    checkpoints are read next to its final model."""
    from audiomcq.evaluation.select import checkpoints, rank

    spec = parse_init(spec)
    if sft is None:
        return {
            "init": spec,
            "path": str(base),
            "stage": "base",
            "step": 0,
            "why": "the paradigm has no SFT stage: GRPO starts from the base model",
        }
    final = Path(sft["final"])
    run = final.parents[1]
    found = []
    for c in checkpoints(run):  # the final model carries the step SFT ended at, unless a checkpoint already does
        if c["stage"] == "sft" and c["path"] == str(final):
            c["step"] = sft["steps"]
            if any(f["step"] == c["step"] for f in found):
                continue
        if c["stage"] == "sft":
            found.append(c)
    if spec == "sft@final":
        return {
            "init": spec,
            "path": str(final),
            "stage": "sft",
            "step": sft["steps"],
            "why": f"grpo.init {spec}: the model SFT ended with (step {sft['steps']})",
        }
    if spec != "sft@best":
        step = int(spec.split("@")[1])
        match = [c for c in found if c["step"] == step]
        if not match:
            have = sorted({c["step"] for c in found})
            raise AudioMCQError(
                f"grpo.init {spec}: SFT has no complete checkpoint at step {step} (complete: {have}); "
                "save one there (sft.trainer_args.save_steps) or pick another step"
            )
        return {
            "init": spec,
            "path": match[0]["path"],
            "stage": "sft",
            "step": step,
            "why": f"grpo.init {spec}: the recipe names this step",
        }
    if selection is None:
        raise AudioMCQError(
            "grpo.init sft@best needs a selection set: pass --selection (held-out records) to "
            "`train run`, or set grpo.init to sft@final or sft@STEP"
        )
    settings = eval_settings or {}
    ranked = rank(
        found,
        selection,
        audio_root,
        Path(out_dir) / "grpo-init",
        batch_size=int(settings.get("batch_size", 64)),
        max_new_tokens=int(settings.get("max_new_tokens", 256)),
    )
    chosen = ranked["selected"]
    log.info("GRPO starts from %s (%s)", chosen["path"], ranked["why"])
    return {
        "init": spec,
        "path": chosen["path"],
        "stage": "sft",
        "step": chosen["step"],
        "why": f"grpo.init {spec}: {ranked['why']} on the selection set ({ranked['rule']})",
        "candidates": ranked["candidates"],
    }
