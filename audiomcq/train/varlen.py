"""``sft.kernels.attention: varlen``: packed batches through torch's own variable-length flash attention (CUDA).

With ``sdpa`` a packed row gets a dense block-diagonal mask: every query still meets every key of the row, so the
attention work grows with the square of the whole row (16 samples of ~900 tokens: ~16x the work of padded rows) and
the mask-aware kernels are the slower ones. flash-attn's varlen kernels skip the other samples entirely, but the
package is not in our images. torch (>= 2.9) ships the same kernel as ``torch.nn.attention.varlen.varlen_attn``; this
registers it with transformers' attention interface for the language model only (the audio encoders keep sdpa),
with cumulative sample lengths taken from the restarting ``position_ids`` of the packed row.

The language model's layers then get no mask at all (transformers' flash-style mask function returns None for an
unpadded row) and call ``varlen_attention``. A row that is one sample runs plain causal sdpa; anything else it cannot
run exactly (padding masks, dropout) is refused rather than run across samples. torch's kernel is CUDA-only, so
the switch is refused on a machine without CUDA; tests check the wiring on CPU with a reference stand-in for the
kernel, and ``scripts/gpu-checks.sh`` checks the kernel itself against padded sdpa on the GPU.
"""

from __future__ import annotations

from typing import Any

from audiomcq.errors import AudioMCQError

NAME = "audiomcq_varlen"
# Per sub-model implementation: varlen for the language model, sdpa for the encoders (they have no packed rows).
IMPLEMENTATION = {"text_config": NAME, "audio_config": "sdpa", "vision_config": "sdpa"}


def kernel(*args: Any, **kwargs: Any) -> Any:
    """torch's variable-length flash attention (looked up per call, so tests can stand in for it on CPU)."""
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn(*args, **kwargs)


def register() -> None:
    """Make ``NAME`` a transformers attention implementation (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(NAME, varlen_attention)
    AttentionMaskInterface.register(NAME, flash_attention_mask)


def available() -> str | None:
    """None when this machine can run the kernel, else why not."""
    import importlib.util

    import torch

    if importlib.util.find_spec("torch.nn.attention.varlen") is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen"
    if not torch.cuda.is_available():
        return "torch's varlen attention runs on CUDA only"
    return None


def cumulative_lengths(position_ids: Any) -> tuple[Any, int]:
    """``cu_seqlens`` (int32, one entry per sample start plus the row's end) and the longest sample of a packed row."""
    import torch

    row = position_ids.reshape(-1, position_ids.shape[-1])[0]
    starts = (row == 0).nonzero().flatten()
    cu = torch.cat([starts, starts.new_tensor([row.numel()])]).to(torch.int32)
    return cu, int((cu[1:] - cu[:-1]).max())


def varlen_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention-function signature (``query``: ``[1, heads, T, dim]``); returns ``[1, T, heads,
    dim]``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    positions = kwargs.get("position_ids")
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if positions is None or not causal or attention_mask is not None:
        if attention_mask is not None and causal:
            raise AudioMCQError("sft.kernels.attention=varlen runs packed batches only; set sft.kernels.packing=true")
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    cu, longest = cumulative_lengths(positions)
    if cu.numel() == 2:  # one sample: plain causal attention
        return sdpa_attention_forward(
            module, query, key, value, None, dropout=dropout, scaling=scaling, is_causal=True, **kwargs
        )
    if query.shape[0] != 1 or dropout:
        raise AudioMCQError("varlen attention takes one packed row without attention dropout")
    q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))  # [T, heads, dim]
    out = kernel(
        q, k, v, cu, cu, longest, longest, scale=scaling, window_size=(-1, 0), enable_gqa=q.shape[1] != k.shape[1]
    )
    return out[None], None
