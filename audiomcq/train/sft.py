"""SFT on MCQ records with trl's SFTTrainer, the audio reaching every forward through ``AudioSFTCollator``.

Also used from a random init to pre-train the demo's base and filter models (the paper starts from pre-trained
LALMs; the embedded default has to make its own).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import PrinterCallback
from trl import SFTTrainer

from audiomcq.data.io import read_records
from audiomcq.train.common import (
    ResumeWeightsMixin,
    apply_freeze,
    checkpointing,
    lora_config,
    make_config,
    run_training,
    within_length,
)

log = logging.getLogger(__name__)
# Only these columns go into the HF dataset: extras have mixed types that Arrow cannot always unify.
COLUMNS = ("id", "question", "choices", "answer", "audio_path")


class AudioSFTTrainer(ResumeWeightsMixin, SFTTrainer):
    """SFTTrainer that resumes weights correctly (see ``ResumeWeightsMixin``); the audio comes from the collator.
    ``full_logits`` (``sft.kernels.loss: full``) computes the loss from whole-batch logits instead of trl's fused head.
    """

    full_logits = False

    def compute_loss(
        self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if not self.full_logits:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        from audiomcq.train.kernels import full_logits_loss

        loss = full_logits_loss(self, model, inputs, num_items_in_batch)
        return (loss, None) if return_outputs else loss


def records_dataset(records: list[Any], path: str | Path, extra: tuple[str, ...] = ()) -> Any:
    """An HF Dataset of the columns a collator needs, plus ``extra`` ones (``path`` names the source in errors)."""
    from datasets import Dataset

    rows = [{k: r.to_dict().get(k) for k in (*COLUMNS, *extra)} for r in records]
    if not rows:
        raise ValueError(f"{path}: no records to train on")
    return Dataset.from_list(rows)


def train_sft(
    model_dir: str | Path,
    data: str | Path,
    audio_root: str | Path,
    out_dir: str | Path,
    final_dir: str | Path | None = None,
    **kw: Any,
) -> dict:
    """Fine-tune ``model_dir`` on ``data``; saves checkpoints and ``final/`` under ``out_dir``."""
    run = run_training(build_sft_trainer, model_dir, data, audio_root, out_dir, final_dir, **kw)
    losses = [e["loss"] for e in run.pop("log") if "loss" in e]
    if losses:
        log.info("SFT %s: %d steps, loss %.3f -> %.3f", out_dir, run["steps"], losses[0], losses[-1])
    return {**run, "losses": losses}


def build_sft_trainer(
    model_dir: str | Path,
    data: str | Path,
    audio_root: str | Path,
    out_dir: str | Path,
    *,
    steps: int = -1,
    lr: float = 1e-6,
    batch_size: int = 16,
    warmup_ratio: float = 0.05,
    save_steps: int | None = None,
    seed: int = 0,
    logging_steps: int = 10,
    freeze: dict[str, bool] | None = None,
    lora: dict[str, Any] | None = None,
    trainer_args: dict[str, Any] | None = None,
    dtype: str = "auto",
    kernels: dict[str, Any] | None = None,
    cot: str | None = None,
) -> tuple[Any, Any]:
    """The configured SFTTrainer and the processor. ``trainer_args`` (SFTConfig fields by their own names, as the
    paradigm recipes give them) override the short keyword arguments; ``freeze`` freezes llm/audio/aligner; ``lora``
    (peft LoraConfig fields) trains adapters on the language model instead of every weight; ``dtype`` as for
    ``load_model`` (auto: the checkpoint's own); ``kernels`` the memory/kernel switches (``audiomcq.train.kernels``:
    packing, attention, loss); ``cot`` a CoT field trained before each answer (None: answers only, as the paper)."""
    import torch
    from trl import SFTConfig

    from audiomcq.errors import AudioMCQError
    from audiomcq.models import load_model
    from audiomcq.models.batch import COT_FIELDS, AudioSFTCollator, record_target
    from audiomcq.train import kernels as kern
    from audiomcq.train.packing import enable_packing

    out = Path(out_dir)
    switches = kern.resolve(kernels)
    for name in ("packing", "padding_free"):  # trl's own packing cannot run with our audio collator
        if (trainer_args or {}).get(name):
            raise AudioMCQError(f"sft.trainer_args.{name} is trl's text-only packing; use sft.kernels.packing")
    if cot is not None and cot not in COT_FIELDS:
        raise AudioMCQError(f"cot must be one of {', '.join(COT_FIELDS)} or null, not {cot!r}")
    kern.check_attention(switches["attention"])
    loaded = load_model(model_dir, dtype=dtype, attn_implementation=kern.implementation(switches["attention"]))
    if switches["packing"]:
        enable_packing(loaded.model, loaded.family, switches["attention"])
    apply_freeze(loaded.model, **(freeze or {}))
    config = make_config(
        SFTConfig,
        trainer_args,
        output_dir=str(out),
        max_steps=steps,
        learning_rate=lr,
        per_device_train_batch_size=batch_size,
        lr_scheduler_type="cosine",
        warmup_steps=warmup_ratio,  # a float < 1 is a ratio of max_steps in transformers 5
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=logging_steps,
        save_strategy="steps" if save_steps or (trainer_args or {}).get("save_steps") else "no",
        save_steps=save_steps or steps,
        save_only_model=False,  # full state (optimizer, scheduler, RNG, data position): exact resume
        report_to="none",
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        # The collator builds the batch (audio included); trl must neither drop columns nor re-tokenize.
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=None,  # the collator enforces it (trl's own truncation is skipped with our collator)
        dataloader_num_workers=0,
        disable_tqdm=True,
        # off unless the recipe asks (the released recipes do; for tiny models recomputation costs more than it saves)
        activation_checkpointing=checkpointing(trainer_args),
    )
    kern.check_optim(config.optim, next(loaded.model.parameters()).dtype)
    eos = loaded.processor.tokenizer.eos_token
    records = within_length(
        loaded.processor,
        list(read_records(data)),
        audio_root,
        config.max_length,
        out,
        "SFT",
        target=lambda r: record_target(r, eos, cot),
    )
    trainer = AudioSFTTrainer(
        model=loaded.model,
        args=config,
        train_dataset=records_dataset(records, data, (cot,) if cot else ()),
        data_collator=AudioSFTCollator(loaded.processor, audio_root, config.max_length, switches["packing"], cot),
        processing_class=loaded.processor,
        peft_config=lora_config(lora),
    )
    trainer.full_logits = switches["loss"] == "full"
    trainer.remove_callback(PrinterCallback)  # logs go to the trainer state and our logger, not print()
    return trainer, loaded.processor
