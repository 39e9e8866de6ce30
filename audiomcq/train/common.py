"""What SFT and GRPO runs share: resume from the latest complete checkpoint, train, and save a complete,
reloadable model directory.

A checkpoint counts only once its ``COMPLETE`` marker exists: the marker is written after the trainer has saved
weights, optimizer, scheduler, RNG states and trainer state (data position included), so a run killed while
saving never resumes from half a checkpoint. Resuming restores all of it, which makes a killed-and-restarted run
end bit-identical to an uninterrupted one on CPU (tested).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import resource
import shutil
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from transformers import TrainerCallback

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)
COMPLETE = "COMPLETE"
# What writing a model fails with when the disk is full or a file passes the size limit: OSError (ENOSPC, EFBIG),
# safetensors' own error, and torch.save's RuntimeError ("file write failed", "iostream error").
SAVE_ERRORS = (OSError, SafetensorError, RuntimeError)
UNMARKED = "it is not marked complete, so a rerun resumes from the last complete one"


class SaveError(AudioMCQError):
    """A checkpoint or final model that could not be written; a checkpoint is then never marked complete."""


def save_error(folder: str | Path, what: str, err: BaseException, then: str) -> SaveError:
    """One line naming ``folder``, why writing ``what`` there failed and what ``then`` holds, with the free space on
    its volume and any file size limit (``ulimit -f``): they tell a full disk from a too large file where the error
    itself does not (torch.save's does not)."""
    if isinstance(err, OSError):
        reason = f"{err.strerror or err}" + (f" ({Path(err.filename).name})" if err.filename else "")
    else:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        reason = re.sub(r"^\[enforce fail at [^\]]*\][ .]*", "", first).removeprefix("Error while serializing: ")
        reason = reason if isinstance(err, SafetensorError) else f"a write failed ({reason})"
    notes = []
    place = next((p for p in (Path(folder), *Path(folder).parents) if p.exists()), None)
    if place is not None:
        notes.append(f"{shutil.disk_usage(place).free / 2**20:.0f} MiB free there")
    size_limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if size_limit != resource.RLIM_INFINITY:
        notes.append(f"file size limit {size_limit} bytes")
    log.debug("writing %s failed", folder, exc_info=err)
    detail = f" ({', '.join(notes)})" if notes else ""
    return SaveError(f"{folder}: could not save {what}: {reason[:200]}{detail}; {then}")


class MarkComplete(TrainerCallback):
    """Write the run's fingerprint, then ``COMPLETE``, into each checkpoint once the trainer has finished saving it."""

    def __init__(self, fingerprint: dict[str, Any] | None = None) -> None:
        self.fingerprint = fingerprint

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from audiomcq.jsonio import atomic_writer
        from audiomcq.train import fingerprint
        from audiomcq.train.launch import barrier

        barrier()  # every rank has written its part (RNG state, ZeRO shards) before the marker
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and ckpt.is_dir():
            try:
                if self.fingerprint is not None:
                    fingerprint.write(ckpt, self.fingerprint)
                with atomic_writer(ckpt / COMPLETE) as fh:  # on a full disk, no marker rather than an empty one
                    fh.write(str(state.global_step))
            except OSError as err:
                raise save_error(ckpt, "its completion marker", err, UNMARKED) from None


class FiniteGuard(TrainerCallback):
    """Stop at the first non-finite gradient, before the optimizer applies it (the loss is checked in
    ``ResumeWeightsMixin.training_step``): one NaN sample would otherwise turn the weights to NaN while training
    went on and checkpoints were marked complete."""

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        import torch

        grads = [p.grad for p in (model.parameters() if model is not None else ()) if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.detach().float().norm() for g in grads]).sum()):
            step = state.global_step + 1
            raise NonFiniteError(
                f"non-finite gradient at step {step}; no checkpoint of it is kept (check that "
                "step's inputs: audio with NaN/inf samples; or a too high lr)"
            )


class NonFiniteError(AudioMCQError):
    """Training met a non-finite loss or gradient."""


class ResumeWeightsMixin:
    """Trainer mixin: resume weights the way ``from_pretrained`` loads them, stop at a non-finite loss, and report a
    checkpoint that cannot be written (disk full, file size limit) in one line naming it.

    transformers 5 saves these models under their checkpoint key names (``audio_tower.*``, ``model.layers.*``), but
    ``Trainer._load_from_checkpoint`` loads the raw state dict without the key conversion, so on resume *no* weight
    loads and training silently restarts from the initial weights (it only logs "missing keys"). Loading through
    ``from_pretrained`` applies the conversion; ``strict=True`` makes any remaining mismatch an error. A checkpoint
    whose save fails never reaches ``MarkComplete`` (it runs after the save), so it is never resumed from.
    """

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        except SAVE_ERRORS as err:
            ckpt = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"  # type: ignore[attr-defined]
            raise save_error(ckpt, "the checkpoint", err, UNMARKED) from None

    def training_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        loss = super().training_step(model, inputs, *args, **kwargs)  # type: ignore[misc]
        if not torch.isfinite(loss.detach()).all():
            ids = getattr(getattr(self, "data_collator", None), "last_ids", None)
            where = f" (records {ids})" if ids else ""
            raise NonFiniteError(
                f"non-finite loss {loss.item()} at step {self.state.global_step + 1}{where}; "  # type: ignore[attr-defined]
                "training stopped before the update"
            )
        return loss

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        model = model if model is not None else self.model  # type: ignore[attr-defined]
        model = getattr(model, "module", model)  # unwrap DDP
        if hasattr(model, "peft_config"):  # LoRA: the checkpoint holds adapter weights, which Trainer loads fine
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]
            return
        dtype = next(model.parameters()).dtype
        reloaded = type(model).from_pretrained(resume_from_checkpoint, dtype=dtype)
        model.load_state_dict(reloaded.state_dict(), strict=True)


# Parameter-name prefixes of the parts the released scripts can freeze, for both families' layouts.
PARTS = {
    "audio": ("audio_tower.", "model.audio_tower."),
    "aligner": (
        "multi_modal_projector.",
        "model.multi_modal_projector.",
        "audio_tower.proj.",
        "model.audio_tower.proj.",
    ),
    "llm": (
        "language_model.",
        "model.language_model.",
        "model.layers.",
        "model.embed_tokens.",
        "model.norm.",
        "lm_head.",
    ),
}


def apply_freeze(model: Any, llm: bool = False, audio: bool = False, aligner: bool = False) -> dict[str, int]:
    """Freeze the named parts (the scripts' ``--freeze_llm/--freeze_vit/--freeze_aligner``); returns how many
    parameters each froze. The aligner is matched before the audio tower, so freezing the tower alone leaves the
    projector trainable, as ms-swift does."""
    wanted = {"llm": llm, "audio": audio, "aligner": aligner}
    frozen = dict.fromkeys(wanted, 0)
    for name, param in model.named_parameters():
        part = next((p for p in ("aligner", "audio", "llm") if name.startswith(PARTS[p])), None)
        if part and wanted[part]:
            param.requires_grad_(False)
            frozen[part] += param.numel()
    return frozen


# LoRA targets: the language model's attention and MLP projections, under either family's module path.
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def lora_config(lora: dict[str, Any] | None) -> Any:
    """A peft ``LoraConfig`` from a recipe's ``lora`` mapping (None or ``enabled: false``: full fine-tuning)."""
    if not lora or not lora.get("enabled", True):
        return None
    from peft import LoraConfig

    settings = {k: v for k, v in lora.items() if k != "enabled"}
    settings.setdefault("target_modules", LORA_TARGETS)
    return LoraConfig(task_type="CAUSAL_LM", **settings)


def checkpointing(trainer_args: dict[str, Any] | None) -> bool:
    """Activation (gradient) checkpointing as the recipe asks, under either of transformers 5's names for it
    (``gradient_checkpointing`` is the deprecated alias, and an explicit ``activation_checkpointing`` wins)."""
    args = trainer_args or {}
    return bool(args.get("activation_checkpointing", args.get("gradient_checkpointing", False)))


def make_config(config_class: type, overrides: dict[str, Any] | None, **ours: Any) -> Any:
    """A trainer config from our settings, then the recipe's ``trainer_args`` by the config's own field names.

    ``deepspeed: zero2|zero3`` names a config shipped in the package; a GPU-only setting on a machine without CUDA
    is an error that says so, not a crash inside the trainer."""
    import torch

    from audiomcq.errors import AudioMCQError

    args = {**ours, **(overrides or {})}
    unknown = set(args) - set(config_class.__dataclass_fields__)
    if unknown:
        raise AudioMCQError(f"unknown {config_class.__name__} setting(s) {sorted(unknown)}")
    if args.get("deepspeed") in ("zero2", "zero3"):
        from importlib import resources

        args["deepspeed"] = str(resources.files("audiomcq.train").joinpath(f"deepspeed_{args['deepspeed']}.json"))
    if not torch.cuda.is_available():
        gpu_only = [k for k in ("deepspeed", "bf16", "use_vllm") if args.get(k)]
        if gpu_only:
            raise AudioMCQError(
                f"{gpu_only} need a CUDA GPU; on CPU set them off (e.g. --set sft.trainer_args.bf16=false)"
            )
    return config_class(**args)


def within_length(
    processor: Any,
    records: list[Any],
    audio_root: Any,
    max_length: int | None,
    out_dir: str | Path,
    stage: str,
    target: Any = None,
) -> list[Any]:
    """The records that fit ``max_length`` tokens (audio included; ``target(record)``: the SFT answer text).

    One over-long record used to stop a multi-day run in its first batch holding it; the released stack drops such
    records, and so does this, counting them: the skipped ids, their token counts and the reason go to
    ``<out_dir>/skipped.jsonl`` and one log line. A clip that cannot be read is skipped the same way."""
    from audiomcq.jsonio import write_jsonl
    from audiomcq.models.lengths import token_counts
    from audiomcq.train.launch import is_main

    if not max_length:
        return records
    kept, skipped = [], []
    for record, tokens in token_counts(processor, records, audio_root, target):
        if tokens is None:
            skipped.append({"id": record.id, "reason": "unreadable audio", "audio_path": record.audio_path})
        elif tokens > max_length:
            skipped.append({"id": record.id, "reason": "over max_length", "tokens": tokens, "max_length": max_length})
        else:
            kept.append(record)
    if skipped and is_main():
        report = Path(out_dir) / "skipped.jsonl"
        write_jsonl(report, skipped)
        log.warning(
            "%s: skipped %d of %d records (over %d tokens or unreadable audio); ids in %s",
            stage,
            len(skipped),
            len(records),
            max_length,
            report,
        )
    return kept


def latest_complete_checkpoint(out_dir: str | Path) -> Path | None:
    """The highest-step ``checkpoint-N`` under ``out_dir`` that carries its ``COMPLETE`` marker."""
    done = [p for p in Path(out_dir).glob("checkpoint-*") if (p / COMPLETE).is_file() and p.name[11:].isdigit()]
    return max(done, key=lambda p: int(p.name[11:]), default=None)


def run_training(
    build: Any, model_dir: str | Path, data: Any, audio_root: Any, out_dir: str | Path, final_dir: Any, **kw: Any
) -> dict[str, Any]:
    """Build a trainer with ``build(model, data, audio_root, local_out, **kw)`` and train it; ``model_dir`` and
    ``out_dir`` may be ``s3://`` URIs (see ``audiomcq.train.remote``)."""
    from audiomcq.infra.storage import local_model
    from audiomcq.train.fingerprint import fingerprint
    from audiomcq.train.remote import resolve_out

    local, remote = resolve_out(out_dir)
    start = local_model(model_dir)
    trainer, processor = build(start, data, audio_root, local, **kw)
    return train_and_save(trainer, processor, local, final_dir, remote, fingerprint(start, data, kw))


def finish_uploads(out: Path, remote: str) -> int:
    """Upload again each complete local checkpoint whose upload to ``remote`` was cut short (the store went away:
    no ``_COMPLETE`` there), so a rerun leaves no checkpoint of the run behind; returns how many."""
    from audiomcq.infra import storage

    count = 0
    for ckpt in sorted(out.glob("checkpoint-*")):
        if (ckpt / COMPLETE).is_file() and not storage.is_complete(f"{remote}/{ckpt.name}"):
            log.info("uploading %s again: its upload to %s/%s did not finish", ckpt, remote, ckpt.name)
            storage.publish(ckpt, f"{remote}/{ckpt.name}")
            count += 1
    return count


def save_final(trainer: Any, processor: Any, final: Path, run_fingerprint: dict[str, Any] | None) -> None:
    """The trained model, its processor and (last) the run's fingerprint in ``final``: a save cut short leaves no
    fingerprint, not an older run's."""
    from audiomcq.train import fingerprint

    if trainer.is_world_process_zero():
        (final / fingerprint.NAME).unlink(missing_ok=True)
    if hasattr(trainer.model, "merge_and_unload"):
        # LoRA: merge the adapters so the final directory is an ordinary model that eval, vLLM and serving load.
        if trainer.is_world_process_zero():
            trainer.model.merge_and_unload().save_pretrained(str(final))
    else:
        trainer.save_model(str(final))  # on every rank: ZeRO-3 gathers the shards; the trainer writes on rank 0
    if trainer.is_world_process_zero():
        processor.save_pretrained(str(final))  # the trainer saves the tokenizer only; eval and serving need it all
        if run_fingerprint is not None:
            fingerprint.write(final, run_fingerprint)


def train_and_save(
    trainer: Any,
    processor: Any,
    out_dir: str | Path,
    final_dir: str | Path | None,
    remote: str | None = None,
    run_fingerprint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (resuming when ``out_dir`` — or ``remote``, when given — holds a complete checkpoint of the same
    ``run_fingerprint``); save model + processor to ``final_dir`` (default ``<out_dir>/final``); return path, steps
    and logs. With ``remote`` every checkpoint and the finished run are uploaded there."""
    from audiomcq.train import fingerprint
    from audiomcq.train import remote as s3run
    from audiomcq.train.launch import barrier, is_main
    from audiomcq.train.telemetry import Telemetry

    out = Path(out_dir)
    # the run label names the output and a short hash of where it lives, so parallel runs (paradigms, pipeline
    # runs) that share folder names never overwrite each other's series in the Pushgateway
    where = hashlib.sha256(str(remote or out.resolve()).encode()).hexdigest()[:6]
    trainer.add_callback(Telemetry(run=f"{out.parent.name}-{out.name}-{where}"))
    trainer.add_callback(FiniteGuard())
    trainer.add_callback(MarkComplete(run_fingerprint))  # after Telemetry: the marker is a checkpoint's last file
    if remote:
        trainer.add_callback(s3run.UploadCheckpoints(remote))  # after the marker: only complete ones go up
        if os.environ.get("LOCAL_RANK", "0") == "0":  # each node's staging disk needs the checkpoint
            s3run.restore_checkpoint(remote, out)
        if is_main():
            finish_uploads(out, remote)
        barrier()
    resume = latest_complete_checkpoint(out_dir)
    if resume is not None:
        log.info("resuming %s from %s", out_dir, resume)
        if run_fingerprint is not None:
            fingerprint.check(resume, run_fingerprint)
        if getattr(trainer, "is_deepspeed_enabled", False) and not any(Path(resume).glob("global_step*")):
            # transformers' DeepSpeed resume needs the engine's state; it would fail deep inside train() instead
            from audiomcq.errors import AudioMCQError

            raise AudioMCQError(
                f"{resume}: a weights-only checkpoint (save_only_model), which DeepSpeed cannot "
                "resume; set trainer_args.save_only_model=false for runs that must"
            )
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    final = Path(final_dir or Path(out_dir) / "final")
    try:
        save_final(trainer, processor, final, run_fingerprint)
    except SAVE_ERRORS as err:
        raise save_error(final, "the final model", err, "it has no fingerprint.json (written last)") from None
    if remote and is_main():
        s3run.publish_run(out, remote)
    return {
        "final": str(final),
        "final_uri": f"{remote}/final" if remote and final == out / "final" else None,
        "steps": trainer.state.global_step,
        "resumed_from": str(resume) if resume else None,
        "train_runtime": result.metrics.get("train_runtime"),
        "log": trainer.state.log_history,
    }
