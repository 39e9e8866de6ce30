"""SFT memory and kernel switches (a recipe's ``sft.kernels``), each refused in one line when it cannot be honoured.

- ``packing`` (default false): each batch becomes one padding-free row (``audiomcq.train.packing``). Off, batches
  are padded exactly as before, so runs without it are unchanged.
- ``attention`` (default ``sdpa``, what transformers picks anyway): ``sdpa``, ``eager``, ``flash_attention_2`` or
  ``flash_attention_3`` (those two need the flash-attn package and a CUDA GPU), or ``varlen`` (torch's own
  variable-length flash kernel for the language model, CUDA, packed batches only: ``audiomcq.train.varlen``). All
  keep packed samples apart: sdpa and eager through a block-diagonal mask (dense, so its cost grows with the square
  of the packed row), the flash kernels through per-sample lengths (no cross-sample work at all).
- ``loss`` (default ``fused``): trl 1.16's fused LM head, which projects the hidden states through the LM head in
  tiles of 4096 tokens x 32768 vocabulary entries and folds each tile into an online log-sum-exp (in fp32), so the
  whole batch's ``tokens x 152k`` logits never exist at once (and on a GPU only labelled positions are projected).
  ``full`` is the plain path, for comparison: the model's whole-batch logits, upcast to fp32, then cross-entropy; it
  logs no token accuracy or entropy.

The optimizer is a trainer setting, ``sft.trainer_args.optim``: transformers' default with torch >= 2.8 is already
``adamw_torch_fused``; ``check_optim`` refuses it in one line where torch cannot build a fused AdamW.
"""

from __future__ import annotations

from typing import Any

from audiomcq.errors import AudioMCQError

DEFAULTS: dict[str, Any] = {"packing": False, "attention": "sdpa", "loss": "fused"}
ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "varlen")
LOSSES = ("fused", "full")


def resolve(kernels: dict[str, Any] | None) -> dict[str, Any]:
    """The switches with their defaults filled in; unknown names and values are refused."""
    given = dict(kernels or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise AudioMCQError(f"unknown sft.kernels setting(s) {unknown}; known: {', '.join(DEFAULTS)}")
    out = {**DEFAULTS, **given}
    if not isinstance(out["packing"], bool):
        raise AudioMCQError(f"sft.kernels.packing must be true or false, not {out['packing']!r}")
    if out["attention"] not in ATTENTION:
        raise AudioMCQError(f"sft.kernels.attention must be one of {', '.join(ATTENTION)}, not {out['attention']!r}")
    if out["loss"] not in LOSSES:
        raise AudioMCQError(f"sft.kernels.loss must be one of {', '.join(LOSSES)}, not {out['loss']!r}")
    if out["attention"] == "varlen" and not out["packing"]:
        raise AudioMCQError("sft.kernels.attention=varlen runs packed batches only; set sft.kernels.packing=true")
    return out


def check_attention(name: str) -> None:
    """Refuse an attention this machine cannot run, before the model loads."""
    import torch
    from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

    from audiomcq.train import varlen

    available = {"flash_attention_2": is_flash_attn_2_available, "flash_attention_3": is_flash_attn_3_available}
    if name in available and not (torch.cuda.is_available() and available[name]()):
        raise AudioMCQError(
            f"sft.kernels.attention={name} needs a CUDA GPU and the flash-attn package for it; "
            "use sdpa (or varlen with packing on a GPU)"
        )
    if name == "varlen" and (reason := varlen.available()):
        raise AudioMCQError(f"sft.kernels.attention=varlen: {reason}; use sdpa")


def implementation(name: str) -> Any:
    """What ``load_model`` passes to transformers for the ``attention`` switch (varlen: registered first, for the
    language model only)."""
    if name != "varlen":
        return name
    from audiomcq.train import varlen

    varlen.register()
    return varlen.IMPLEMENTATION


def check_optim(optim: Any, dtype: Any) -> None:
    """Refuse ``adamw_torch_fused`` in one line where torch cannot build a fused AdamW for ``dtype`` parameters on
    this machine's training device (the trainer would fail later, at its first step, with a traceback)."""
    import torch

    if str(getattr(optim, "value", optim)) != "adamw_torch_fused":
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.optim.AdamW([torch.zeros(1, device=device, dtype=dtype, requires_grad=True)], fused=True)
    except (RuntimeError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise AudioMCQError(
            f"optim adamw_torch_fused: torch has no fused AdamW for {dtype} on {device} ({reason}); "
            "set sft.trainer_args.optim=adamw_torch"
        ) from None


def full_logits_loss(trainer: Any, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
    """``loss: full``: the summed token cross-entropy of the whole batch's fp32 logits over the labelled tokens,
    divided as trl divides its fused loss (by ``num_items_in_batch``, the labelled tokens of the whole step)."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
    logits = outputs.logits[:, :-1].float()
    target = labels[:, 1:].to(logits.device)
    total = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100, reduction="sum"
    )
    count = (target != -100).sum() if num_items_in_batch is None else num_items_in_batch
    loss = total / torch.as_tensor(count, device=total.device).clamp(min=1)
    if trainer.args.average_tokens_across_devices and num_items_in_batch is not None:
        loss = loss * trainer.accelerator.num_processes  # as trl does: DDP averages the gradients across ranks
    return loss
