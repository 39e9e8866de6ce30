"""Cascade attention for a batch that shares one prompt prefix: the prefix's keys and values are held once.

Every row of a shared-prefix batch (the filter's silence) starts with the same ~780 tokens. Copying their keys and
values into each row made every decoding step read the prefix once per row: at hidden 1024 that traffic was larger
than the weights themselves. Here the prefix stays at batch 1, and each attention layer computes

* all rows' queries against the prefix in one product (the prefix is read once per step, whatever the batch), and
* each row's queries against its own suffix (the question and what was generated so far), masked as usual,

then merges the two softmaxes exactly through their log-sum-exps: with partial results ``(o1, l1)`` and
``(o2, l2)`` the full attention is ``o1 * exp(l1 - l) + o2 * exp(l2 - l)`` where ``l = logaddexp(l1, l2)``.

The function is registered in transformers' ``AttentionInterface`` (and the ``sdpa`` mask builder under the same
name; a ``CascadeLayer`` sizes masks to the suffix, so no mask spans rows x prefix either); ``cascade(model,
cache)`` switches the language model to it for the duration of one ``generate``. Layers whose cache layer is not a
``CascadeLayer`` (or calls made on a thread with no open block) fall through to ``sdpa``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "audiomcq_cascade"
SCORE_BYTES = 256 * 2**20  # the manual (non-CPU) path splits queries so no score block exceeds this

_ACTIVE: ContextVar[DynamicCache | None] = ContextVar("audiomcq_cascade_cache", default=None)
_SWITCH = threading.Lock()  # guards _USERS: the implementation name lives on the model config, shared by threads
_USERS: dict[int, tuple[str | None, int]] = {}  # id(config) -> (implementation before the first block, open blocks)
_CPU_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


class CascadeLayer(DynamicLayer):
    """A cache layer holding the shared prefix once (batch 1) and each row's own tokens in preallocated room.

    ``keys``/``values`` are the rows' suffix only; the prefix is ``prefix_keys``/``prefix_values``, read by
    ``cascade_attention``. Lengths (and so masks and positions) count both, as if the prefix were in every row."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, rows: int, spare: int) -> None:
        super().__init__()
        self.prefix_keys, self.prefix_values = keys, values
        _, heads, _, dim = keys.shape
        self._k = keys.new_empty(rows, heads, max(spare, 1), dim)
        self._v = values.new_empty(rows, heads, max(spare, 1), dim)
        self._n = 0
        self.device, self.is_initialized = keys.device, True
        self.keys, self.values = self._k[:, :, :0], self._v[:, :, :0]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple:
        end = self._n + key_states.shape[-2]
        if end > self._k.shape[-2]:  # more tokens than planned: grow the room (doubling keeps appends amortised)
            size = max(end, 2 * self._k.shape[-2])
            for name in ("_k", "_v"):
                old = getattr(self, name)
                grown = old.new_empty(old.shape[0], old.shape[1], size, old.shape[3])
                grown[:, :, : self._n] = old[:, :, : self._n]
                setattr(self, name, grown)
        self._k[:, :, self._n : end] = key_states
        self._v[:, :, self._n : end] = value_states
        self._n = end
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.prefix_keys.shape[-2] + self._n

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """Masks cover the suffix only (keys from position ``prefix`` on): every query sees the whole prefix anyway,
        and a full mask would cost rows x queries x prefix bytes, per forward, for nothing."""
        return self._n + query_length, self.prefix_keys.shape[-2]

    def _unsupported(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("a cascade cache is built for its batch: no cropping, reordering or re-batching")

    crop = reorder_cache = batch_repeat_interleave = batch_select_indices = _unsupported


def cascade_cache(prefix: DynamicCache, rows: int, spare: int) -> DynamicCache:
    """A cache for ``rows`` rows over the batch-1 ``prefix`` (not copied), with room for ``spare`` tokens per row."""
    cache = DynamicCache()
    cache.layers = [CascadeLayer(layer.keys, layer.values, rows, spare) for layer in prefix.layers]
    return cache


@contextlib.contextmanager
def cascade(model: Any, cache: DynamicCache) -> Iterator[None]:
    """Within the block, the language model of ``model`` attends through ``cache``'s shared prefix, and its LM head
    sees only the last position (the one ``generate`` reads).

    Both families' heads otherwise turn every prompt position into logits: rows x tokens x vocabulary floats, about
    6 GB in fp32 for 64 questions of 150 tokens at Qwen's 152k vocabulary, the largest allocation of the batch."""
    register()
    config = model.config.get_text_config()
    with _SWITCH:  # blocks may overlap in threads: the first one switches, the last one restores
        before, users = _USERS.get(id(config), (config._attn_implementation, 0))
        _USERS[id(config)] = (before, users + 1)
        config._attn_implementation = NAME
    token = _ACTIVE.set(cache)  # per thread: a plain generate running meanwhile falls through to sdpa
    hook = None
    try:
        head = model.get_output_embeddings()
        hook = head.register_forward_pre_hook(_last_position) if head is not None else None
        yield
    finally:
        if hook is not None:
            hook.remove()
        _ACTIVE.reset(token)
        with _SWITCH:
            before, users = _USERS.pop(id(config))
            if users > 1:
                _USERS[id(config)] = (before, users - 1)
            else:
                config._attn_implementation = before


def _last_position(module: torch.nn.Module, args: tuple) -> tuple | None:
    """LM-head pre-hook: within a cascade block on this thread, only the last position goes through the head."""
    hidden = args[0]
    if _ACTIVE.get() is None or hidden.dim() != 3 or hidden.shape[1] == 1:
        return None
    return (hidden[:, -1:], *args[1:])


def register() -> None:
    """Make ``NAME`` a known attention implementation (and mask builder); idempotent."""
    AttentionInterface.register(NAME, cascade_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def cascade_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The attention-interface entry: prefix + suffix attention for cascade layers, ``sdpa`` for anything else.

    ``query``: (rows, heads, q, dim); ``key``/``value``: the rows' suffix, (rows, kv_heads, s, dim);
    ``attention_mask``: the boolean (rows, 1, q, s) suffix mask (``CascadeLayer.get_mask_sizes``) or None (plain
    causal)."""
    cache = _ACTIVE.get()
    layer = None if cache is None else cache.layers[module.layer_idx]
    if not isinstance(layer, CascadeLayer) or dropout:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    if kwargs.get("sliding_window") is not None:  # neither family's released checkpoints slide
        raise NotImplementedError("cascade attention over a shared prefix does not support sliding-window layers")
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    out = merged_attention(query, layer.prefix_keys, layer.prefix_values, key, value, attention_mask, scale)
    return out.transpose(1, 2).contiguous(), None


def merged_attention(
    query: torch.Tensor,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    suffix_mask: torch.Tensor | None,
    scale: float,
    fused: bool | None = None,
) -> torch.Tensor:
    """Softmax attention of ``query`` over ``prefix + suffix`` keys, the batch-1 prefix read once; (rows, heads, q,
    dim). ``suffix_mask``: boolean (rows, 1, q, s), True where a query may look, or None for bottom-right causal.
    ``fused``: use the CPU flash kernel (default: on CPU when torch has it); else plain products."""
    rows, heads, q_len, dim = query.shape
    kv_heads = prefix_keys.shape[1]
    groups = heads // kv_heads
    fused = (_CPU_FLASH is not None and query.device.type == "cpu") if fused is None else fused
    # Prefix: every row's query heads that share a key head become one long query block of that head.
    grouped = query.reshape(rows, kv_heads, groups * q_len, dim)
    stacked = grouped.transpose(0, 1).reshape(1, kv_heads, rows * groups * q_len, dim)
    out_p, lse_p = _attend(stacked, prefix_keys, prefix_values, None, scale, fused)
    out_p = out_p.view(kv_heads, rows, groups * q_len, dim).transpose(0, 1)
    lse_p = lse_p.view(kv_heads, rows, groups * q_len).transpose(0, 1)
    # Suffix: per row, query heads grouped by key head so the suffix is not repeated across the group.
    allowed = _suffix_allowed(suffix_mask, rows, q_len, keys.shape[-2], query.device)
    allowed = allowed.unsqueeze(2).expand(-1, -1, groups, -1, -1).reshape(rows, -1, groups * q_len, keys.shape[-2])
    out_s, lse_s = _attend(grouped, keys, values, allowed, scale, fused)
    # A query that sees none of its suffix (left padding) gets no weight from it.
    lse_s = lse_s.masked_fill(~allowed.any(-1), float("-inf"))
    total = torch.logaddexp(lse_p, lse_s)
    w_p, w_s = (lse_p - total).exp().unsqueeze(-1), (lse_s - total).exp().unsqueeze(-1)
    out = out_p.float() * w_p + torch.nan_to_num(out_s.float()) * w_s
    return out.to(query.dtype).reshape(rows, heads, q_len, dim)


def _suffix_allowed(mask: torch.Tensor | None, rows: int, q_len: int, s_len: int, device: Any) -> torch.Tensor:
    """The boolean (rows, 1, q, s) suffix mask; without one, queries are the last ``q`` of ``s`` tokens, causal."""
    if mask is not None:
        return mask.to(torch.bool).expand(rows, 1, q_len, s_len)
    pos = torch.arange(s_len, device=device)
    causal = pos[None, :] <= pos[-q_len:, None]
    return causal.view(1, 1, q_len, s_len).expand(rows, 1, q_len, s_len)


def _attend(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    allowed: torch.Tensor | None,
    scale: float,
    fused: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, log-sum-exp in float32) of softmax attention; ``allowed`` (boolean, broadcast to the scores) or
    None for no mask. Equal head counts on both sides."""
    if fused:
        bias = None
        if allowed is not None:
            bias = torch.zeros(allowed.shape, dtype=query.dtype, device=query.device)
            bias.masked_fill_(~allowed, float("-inf"))
        out, lse = _CPU_FLASH(query, keys, values, attn_mask=bias, scale=scale)
        return out, lse.float()
    chunk = max(1, SCORE_BYTES // (4 * query.shape[0] * query.shape[1] * keys.shape[-2]))
    keys_t, values = keys.float().transpose(-1, -2), values.float()
    outs, lses = [], []
    for start in range(0, query.shape[2], chunk):
        part = query[:, :, start : start + chunk]
        scores = torch.matmul(part.float(), keys_t).mul_(scale)
        if allowed is not None:
            scores.masked_fill_(~allowed[:, :, start : start + chunk], float("-inf"))
        lse = torch.logsumexp(scores, dim=-1, keepdim=True)
        probs = (scores - lse).exp_().nan_to_num_(0.0)  # an all-masked query: -inf - -inf
        outs.append(torch.matmul(probs, values).to(query.dtype))
        lses.append(lse.squeeze(-1))
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)
