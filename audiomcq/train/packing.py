"""Padding-free SFT batches: every sample of a batch in one row, attention kept inside each sample.

A padded batch spends compute on pad tokens (up to the longest sample); a packed one has none. The samples are laid
end to end in one row and ``position_ids`` restart at 0 for each; with no ``attention_mask`` in the batch,
transformers (5.24, ``masking_utils.find_packed_sequence_indices``) turns the restarts into a block-diagonal causal
mask for ``sdpa``/``eager`` and into per-sample lengths for flash attention, so no token ever sees another sample's.
The loss is the same as the padded batch's: the same label tokens, summed and divided by their count.

The audio needs nothing more: ``input_features``/``feature_attention_mask`` stay one row per clip, in sample order,
and both families scatter the encoded clips onto the ``<|AUDIO|>`` tokens in reading order, which packing keeps.

Qwen2-Audio's language model is a plain Qwen2, which reads 2-D packed ``position_ids`` directly. Qwen2.5-Omni's
thinker needs more: its text model rotates with 3-D (multimodal) positions from ``get_rope_index`` and builds the
packed mask only from a fourth, text-position row (``[4, batch, seq]``); given 2-D positions it would expand them to
3-D and attend across samples. ``omni_packed_positions`` therefore computes each sample's 3-D positions with the
model's own ``get_rope_index`` (whatever it does with audio) and stacks the restarting text row on top, in a
forward pre-hook on the thinker, so the trainer and trl keep seeing ordinary 2-D ``position_ids``.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)
# Attention implementations that honour restarting position ids without an attention mask (checked in
# tests/train/test_packing.py for sdpa and eager; flash attention derives per-sample lengths from the same positions).
PACKABLE_ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "varlen")


def pack_batch(batch: Any) -> Any:
    """The padded SFT ``batch`` (``input_ids``/``attention_mask``/``labels`` of shape ``[n, L]``, either padding
    side) as one row of ``[1, T]`` with no padding, ``position_ids`` restarting per sample, and the first token of each
    sample unlabelled (so no sample is scored on predicting the next one's first token). Audio features are kept."""
    import torch
    from transformers import BatchFeature

    mask = batch["attention_mask"].bool()
    lengths = mask.sum(dim=1)
    labels = batch["labels"][mask]
    starts = torch.cumsum(lengths, 0) - lengths
    labels[starts] = -100
    positions = torch.cat([torch.arange(int(n)) for n in lengths])
    packed = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "labels")}
    packed.update(input_ids=batch["input_ids"][mask][None], labels=labels[None], position_ids=positions[None])
    return BatchFeature(packed)


def sample_starts(position_ids: Any) -> list[int]:
    """Where each packed sample begins in a ``[1, T]`` row of restarting positions, plus the row's end."""
    row = position_ids[0]
    return [*(row == 0).nonzero().flatten().tolist(), int(row.numel())]


def omni_packed_positions(thinker: Any, input_ids: Any, position_ids: Any, feature_attention_mask: Any) -> Any:
    """``[4, 1, T]`` positions for a packed Qwen2.5-Omni row: the restarting text positions, then each sample's own
    3-D positions from the thinker's ``get_rope_index`` (its clips' feature lengths taken in order)."""
    import torch

    audio_start = thinker.config.audio_start_token_id
    lengths = feature_attention_mask.sum(-1) if feature_attention_mask is not None else None
    rows, clip = [], 0
    with torch.no_grad():
        for start, end in itertools.pairwise(sample_starts(position_ids)):
            ids = input_ids[:, start:end]
            clips = int((ids == audio_start).sum())
            rope, _ = thinker.get_rope_index(
                ids,
                attention_mask=torch.ones_like(ids),
                audio_seqlens=lengths[clip : clip + clips] if lengths is not None else None,
            )
            rows.append(rope.to(position_ids.device))
            clip += clips
    return torch.cat([position_ids[None], torch.cat(rows, dim=2)], dim=0)


def _omni_hook(module: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]] | None:
    positions = kwargs.get("position_ids")
    if positions is None or positions.ndim != 2 or kwargs.get("attention_mask") is not None:
        return None  # padded batches and generation keep the model's own positions
    if kwargs.get("input_ids") is None or positions.shape[0] != 1:
        raise AudioMCQError("packed Qwen2.5-Omni batches need input_ids and one packed row")
    kwargs["position_ids"] = omni_packed_positions(
        module, kwargs["input_ids"], positions, kwargs.get("feature_attention_mask")
    )
    return args, kwargs


def enable_packing(model: Any, family: str, attention: str) -> None:
    """Make ``model`` train correctly on packed batches, or refuse in one line when it cannot."""
    if attention not in PACKABLE_ATTENTION:
        raise AudioMCQError(
            f"sft.kernels.packing needs an attention implementation that keeps packed samples apart "
            f"({', '.join(PACKABLE_ATTENTION)}), not {attention!r}"
        )
    if family == "qwen2_5_omni":
        thinker = model.model  # Qwen2_5OmniThinkerModel: merges the audio, then runs the text model
        if not hasattr(thinker, "get_rope_index"):
            raise AudioMCQError(f"{type(model).__name__}: no get_rope_index, cannot place packed Omni samples")
        thinker.register_forward_pre_hook(_omni_hook, with_kwargs=True)
    elif family != "qwen2_audio":
        raise AudioMCQError(f"sft.kernels.packing: no packed layout known for model family {family!r}")
    log.info("SFT packing on: each batch is one padding-free row (%s attention, %s)", attention, family)
