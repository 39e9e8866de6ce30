"""What produced a training run, so a resumed run proves it continues the same training.

A checkpoint carries ``fingerprint.json``: a digest of the starting model, of the training records and of the
settings that change the result. Resuming compares it with the current run's and refuses, naming what changed,
instead of continuing one run with another's data or model (or handing back a finished run's old model).
Settings that only change logging or saving are left out, so a resumed run may change them. The digests are the
general ones of ``audiomcq.fingerprint``, which the other stages' work directories use too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.fingerprint import NAME, file_digest, model_digest, plain
from audiomcq.jsonio import atomic_writer

# Keys (short or trainer_args) that never change what is learned.
NEUTRAL = {
    "logging_steps",
    "save_steps",
    "save_strategy",
    "save_total_limit",
    "save_only_model",
    "report_to",
    "dataloader_num_workers",
    "disable_tqdm",
    "log_completions",
    "eval_steps",
    "logging_first_step",
}


def settings_view(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that change the result, as plain JSON (trainer_args flattened under their own names)."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "trainer_args":
            out.update({f"trainer_args.{k}": v for k, v in (value or {}).items() if k not in NEUTRAL})
        elif key not in NEUTRAL:
            out[key] = value
    return plain(out)


def fingerprint(model_dir: str | Path, data: str | Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The run's fingerprint: starting model, training records, result-changing settings."""
    records = file_digest(data) if Path(data).is_file() else str(data)
    return {"model": model_digest(model_dir), "data": records, "settings": settings_view(settings)}


def check(saved_dir: Path, current: dict[str, Any]) -> None:
    """Refuse to continue from ``saved_dir`` (a checkpoint or final model) made by another run; name what changed."""
    path = saved_dir / NAME
    if not path.is_file():
        raise AudioMCQError(
            f"{saved_dir}: no {NAME}, so nothing proves it belongs to this run; start afresh with a "
            "new --out (or remove the old directory)"
        )
    saved = json.loads(path.read_text())
    changed = [part for part in ("model", "data") if saved.get(part) != current[part]]
    old, new = saved.get("settings", {}), current["settings"]
    changed += [
        f"setting {k} ({old.get(k)!r} -> {new.get(k)!r})"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    if changed:
        raise AudioMCQError(
            f"{saved_dir} was trained with another {', '.join(changed)}; resuming would mix two "
            "runs. Start afresh with a new --out (or remove the old directory)"
        )


def write(folder: Path, current: dict[str, Any]) -> None:
    """Write the fingerprint whole or not at all (a full disk leaves none, never a truncated one)."""
    with atomic_writer(folder / NAME) as fh:
        fh.write(json.dumps(current, indent=2, sort_keys=True) + "\n")
