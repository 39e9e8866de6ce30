"""Training runs whose output (and starting model) live in S3.

The trainers write to a local staging directory; each checkpoint is uploaded once it is complete (its marker
written), with the store's own ``_COMPLETE`` marker last, so a reader never takes a half-uploaded checkpoint. A
restarted run — on another node, with an empty disk — first brings the latest complete checkpoint back from S3 and
resumes from it exactly as from a local one. At the end the final model and the run's metrics go up, and the run
prefix gets its marker.

Staging is ``storage.cache_dir(uri)``: under ``AUDIOMCQ_STAGING`` (default ``~/.cache/audiomcq/runs``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from audiomcq.infra import storage
from audiomcq.train.common import COMPLETE, latest_complete_checkpoint

log = logging.getLogger(__name__)


def resolve_out(out_dir: str | Path) -> tuple[Path, str | None]:
    """(local directory the trainer writes, the ``s3://`` URI it mirrors to or None)."""
    if storage.is_s3(out_dir):
        return storage.cache_dir(str(out_dir)), str(out_dir).rstrip("/")
    return Path(out_dir), None


def _step(uri: str) -> int | None:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return int(name[11:]) if name.startswith("checkpoint-") and name[11:].isdigit() else None


def restore_checkpoint(uri: str, local: Path) -> Path | None:
    """Download the latest complete checkpoint under ``uri`` into ``local`` unless a local complete one is as new;
    returns what was downloaded."""
    remote = [(step, u) for u in storage.subprefixes(uri) if (step := _step(u)) is not None]
    complete = [(step, u) for step, u in sorted(remote, reverse=True) if storage.is_complete(u)]
    if not complete:
        return None
    step, newest = complete[0]
    have = latest_complete_checkpoint(local)
    if have is not None and int(have.name[11:]) >= step:
        return None
    dest = local / f"checkpoint-{step}"
    shutil.rmtree(dest, ignore_errors=True)
    storage.fetch_dir(newest, dest)
    (dest / COMPLETE).write_text(str(step))
    log.info("restored %s from %s", dest, newest)
    return dest


class UploadCheckpoints(TrainerCallback):
    """Upload each checkpoint once its ``COMPLETE`` marker is written (so register after ``MarkComplete``)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and (ckpt / COMPLETE).is_file():
            storage.publish(ckpt, f"{self.uri}/{ckpt.name}")


def publish_run(local: Path, uri: str) -> None:
    """Upload the final model under its own marker (so ``<uri>/final`` is itself a loadable model prefix), then the
    run's metrics and records (checkpoints are already up), then the run's marker."""
    if (local / "final").is_dir():
        storage.publish(local / "final", f"{uri}/final")
    storage.publish(local, uri, exclude=(*(p.name for p in local.glob("checkpoint-*")), "final"))
