"""One post-training paradigm end to end (``audiomcq train run``): allocation, SFT, then GRPO from the checkpoint
``grpo.init`` names."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from audiomcq.config import resolved_recipe
from audiomcq.jsonio import load_json, write_json

log = logging.getLogger(__name__)


def post_train(
    model_dir: str | Path,
    labelled: str | Path,
    audio_root: str | Path,
    out_dir: str | Path,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    variant: str | None = None,
    paradigm: str | None = None,
    selection: str | Path | None = None,
    dtype: str = "auto",
) -> dict[str, Any]:
    """One paradigm: allocate the labelled pool, SFT from ``model_dir``, GRPO from the SFT checkpoint the recipe's
    ``grpo.init`` names (``audiomcq.train.grpo_start``; either stage is skipped when the paradigm gives it no
    data). The recipe's ``sft``/``grpo`` sections go to the trainers as they are; ``paradigm`` defaults to the
    recipe's ``allocation.paradigm``. ``selection`` (held-out records) becomes the position-balanced
    checkpoint-selection set ``data/selection.jsonl``, checked for leakage against the training pool. ``dtype`` is
    the models' (auto: each checkpoint's own). Under a launcher every rank computes the same allocation; rank 0
    writes it."""
    from audiomcq.data.allocation import allocate, check_no_leakage, position_balanced, shuffle_options
    from audiomcq.data.io import read_records, write_records
    from audiomcq.errors import AudioMCQError
    from audiomcq.infra.storage import publish
    from audiomcq.train.grpo import train_grpo
    from audiomcq.train.grpo_start import choose_start, parse_init
    from audiomcq.train.launch import barrier, is_main
    from audiomcq.train.remote import resolve_out
    from audiomcq.train.sft import train_sft

    out, remote = resolve_out(out_dir)  # s3://: records stage locally; each trainer mirrors its own checkpoints
    resolved = resolved_recipe(recipe, overrides, out, variant)
    acfg = resolved["allocation"]
    paradigm = paradigm or acfg.get("paradigm")
    if not paradigm:
        raise AudioMCQError(f"recipe {recipe!r} names no allocation.paradigm; pass one")
    pool = read_records(labelled)
    alloc = allocate(pool, paradigm, sft_size=acfg.get("sft_fraction") or acfg["sft_size"], seed=acfg["seed"])
    summary: dict[str, Any] = {"paradigm": paradigm, "allocation": alloc.report}
    balanced = None
    if selection is not None:  # checked on every rank, so a leak stops all of them alike
        held_out = read_records(selection)
        check_no_leakage(pool, held_out)
        balanced = position_balanced(held_out)
        summary["selection"] = {"source": str(selection), "questions": len(held_out), "items": len(balanced)}
    if is_main():
        write_records(out / "data" / "sft.jsonl", shuffle_options(alloc.sft, acfg["augment"], acfg["seed"]))
        write_records(out / "data" / "rl.jsonl", shuffle_options(alloc.rl, acfg["augment"], acfg["seed"]))
        if balanced is not None:
            write_records(out / "data" / "selection.jsonl", balanced)
    barrier()  # the other ranks read what rank 0 wrote
    stage = {name: f"{remote}/{name}" if remote else out / name for name in ("sft", "grpo")}
    grpo = dict(resolved["grpo"])
    init = parse_init(grpo.pop("init", None))
    if init == "sft@best" and alloc.sft and alloc.rl and balanced is None:  # refused before hours of SFT, not after
        raise AudioMCQError(
            "grpo.init sft@best needs a selection set: pass --selection (held-out records), or set "
            "grpo.init to sft@final or sft@STEP"
        )
    if alloc.sft:
        summary["sft"] = train_sft(
            model_dir, out / "data" / "sft.jsonl", audio_root, stage["sft"], dtype=dtype, **resolved["sft"]
        )
    barrier()  # GRPO starts from the SFT model rank 0 saved
    if alloc.rl:
        if is_main():  # rank 0 chooses (sft@best evaluates checkpoints); the other ranks read its choice
            selection_set = out / "data" / "selection.jsonl" if balanced is not None else None
            write_json(
                out / "grpo-init.json",
                choose_start(
                    init, str(model_dir), summary.get("sft"), selection_set, audio_root, out, resolved.get("eval")
                ),
            )
        barrier()
        start = load_json(out / "grpo-init.json")
        summary["grpo_init"] = start
        summary["grpo"] = train_grpo(
            start["path"], out / "data" / "rl.jsonl", audio_root, stage["grpo"], dtype=dtype, **grpo
        )
    if is_main():
        write_json(out / "summary.json", summary)
        if remote:
            publish(out, remote)
    return summary
