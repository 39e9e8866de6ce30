"""Cascade (shared-prefix) attention: exact against plain attention, on both families, with no per-row prefix copy."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from audiomcq.data.io import read_records
from audiomcq.inference import EngineSpec, Request, Sampling, make_engine
from audiomcq.inference import cascade as cc
from audiomcq.synth.audio import SR

FUSED = [False, True] if cc._CPU_FLASH is not None else [False]


def _reference(query, prefix_k, prefix_v, keys, values, allowed, scale):
    """Plain softmax attention over the prefix copied into every row, then the suffix (GQA by repetition)."""
    rows, heads = query.shape[:2]
    groups = heads // prefix_k.shape[1]
    k = torch.cat([prefix_k.expand(rows, -1, -1, -1), keys], dim=2).repeat_interleave(groups, dim=1)
    v = torch.cat([prefix_v.expand(rows, -1, -1, -1), values], dim=2).repeat_interleave(groups, dim=1)
    full = torch.cat([torch.ones(*allowed.shape[:-1], prefix_k.shape[2], dtype=torch.bool), allowed], dim=-1)
    scores = (query.double() @ k.double().transpose(-1, -2)) * scale
    scores = scores.masked_fill(~full, float("-inf"))
    return (torch.softmax(scores, -1) @ v.double()).float()


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("q_len", [1, 5])
def test_merged_attention_equals_attention_over_the_prefix_copied_into_every_row(fused, q_len):
    torch.manual_seed(0)
    rows, heads, kv_heads, dim, prefix, suffix = 3, 4, 2, 16, 37, 9
    query = torch.randn(rows, heads, q_len, dim)
    prefix_k, prefix_v = torch.randn(1, kv_heads, prefix, dim), torch.randn(1, kv_heads, prefix, dim)
    keys, values = torch.randn(rows, kv_heads, suffix, dim), torch.randn(rows, kv_heads, suffix, dim)
    # Row 1 is left-padded by 6: its first query positions (q_len 5) see none of their suffix, only the prefix.
    pad = torch.tensor([0, 6, 2])
    pos = torch.arange(suffix)
    causal = pos[None, :] <= pos[-q_len:, None]
    allowed = (causal[None] & (pos[None, None, :] >= pad[:, None, None]))[:, None]
    got = cc.merged_attention(query, prefix_k, prefix_v, keys, values, allowed, 0.25, fused=fused)
    want = _reference(query, prefix_k, prefix_v, keys, values, allowed, 0.25)
    assert got.shape == want.shape and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    # No mask: the queries are the last q_len of the suffix, causal (what sdpa's is_causal skip leaves us).
    got = cc.merged_attention(query, prefix_k, prefix_v, keys, values, None, 0.25, fused=fused)
    plain = causal[None, None].expand(rows, 1, q_len, suffix)
    torch.testing.assert_close(
        got, _reference(query, prefix_k, prefix_v, keys, values, plain, 0.25), atol=2e-5, rtol=1e-4
    )


def test_the_merge_is_not_a_plain_average():
    """Weights come from each part's log-sum-exp: a prefix that dominates the scores must dominate the output."""
    query = torch.ones(1, 1, 1, 4)
    prefix_k, prefix_v = torch.full((1, 1, 1, 4), 10.0), torch.full((1, 1, 1, 4), 1.0)
    keys, values = torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 1, 4)
    out = cc.merged_attention(query, prefix_k, prefix_v, keys, values, None, 1.0, fused=False)
    assert out.min() > 0.99


@pytest.fixture(scope="module")
def silent_requests(synth_corpus):
    silence = np.zeros(2 * SR, np.float32)
    return [Request(r.question, tuple(r.choices), silence) for r in read_records(synth_corpus / "eval.jsonl")]


@pytest.mark.parametrize("family", ["tiny_omni", "tiny_qwen2_audio"])
def test_cascade_logits_and_greedy_tokens_equal_the_plain_forward(family, request, silent_requests, monkeypatch):
    """The whole prompt (audio encoded per row, plain sdpa, left padding before it) vs the shared prefix held once."""
    from audiomcq.inference.prefix import SharedPrefix
    from audiomcq.models.batch import encode_prompts, prompt_text

    engine = make_engine(EngineSpec(str(request.getfixturevalue(family)), shared_prefix=False))
    model, processor = engine.loaded.model, engine.loaded.processor
    reqs = silent_requests[:6]
    texts = [prompt_text(processor, r.question, r.choices, engine.format) for r in reqs]
    out = {"return_dict_in_generate": True, "output_logits": True, "do_sample": False}
    with torch.inference_mode():
        batch = encode_prompts(processor, texts, [r.audio for r in reqs])
        plain = model.generate(**batch, max_new_tokens=6, **out)
    prefix = SharedPrefix(model, processor, reqs[0].audio, engine.format)
    calls, merged, head_inputs = [], cc.merged_attention, []
    monkeypatch.setattr(cc, "merged_attention", lambda *a, **k: calls.append(1) or merged(*a, **k))
    spy = model.get_output_embeddings().register_forward_hook(lambda _m, args, _o: head_inputs.append(args[0].shape))
    try:
        shared, start = prefix.run(texts, 6, **out)
    finally:
        spy.remove()
    assert [shape[1] for shape in head_inputs] == [1] * 6  # the prefill's logits only at the position generate reads
    layers = model.config.get_text_config().num_hidden_layers
    assert len(calls) == 6 * layers  # every layer of every step went through the cascade
    assert model.config.get_text_config()._attn_implementation == "sdpa"  # switched back after the block
    torch.testing.assert_close(torch.stack(shared.logits), torch.stack(plain.logits), atol=1e-4, rtol=1e-4)
    assert torch.equal(shared.sequences[:, start:], plain.sequences[:, batch["input_ids"].shape[1] :])


def test_the_prefix_is_held_once_whatever_the_batch(tiny_omni):
    """Cache memory grows with each row's own tokens only, and the prefix tensors are the prefix's, not copies."""
    from audiomcq.inference.prefix import SharedPrefix

    engine = make_engine(EngineSpec(str(tiny_omni)))
    prefix = SharedPrefix(engine.loaded.model, engine.loaded.processor, np.zeros(4 * SR, np.float32))

    def held(rows: int) -> int:
        cache = cc.cascade_cache(prefix.cache, rows, 20)
        for mine, source in zip(cache.layers, prefix.cache.layers, strict=True):
            assert mine.prefix_keys.data_ptr() == source.keys.data_ptr()
        return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer._k, layer._v))

    per_row = held(2) - held(1)
    assert held(64) - held(1) == 63 * per_row
    prefix_bytes = sum(
        t.numel() * t.element_size() for layer in prefix.cache.layers for t in (layer.keys, layer.values)
    )
    assert per_row * prefix.ids.shape[1] == prefix_bytes * 20  # a row holds 20 tokens of room, not the prefix


def test_the_cache_grows_past_its_planned_room():
    layer = cc.CascadeLayer(torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2), rows=2, spare=1)
    for step in range(4):
        keys, _ = layer.update(torch.full((2, 1, 1, 2), float(step)), torch.zeros(2, 1, 1, 2))
    assert keys[0, 0, :, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert layer.get_seq_length() == 3 + 4
    assert layer.get_mask_sizes(1) == (4 + 1, 3)  # masks start after the prefix: never rows x queries x prefix
    with pytest.raises(NotImplementedError):
        layer.crop(-1)


def test_overlapping_blocks_restore_the_implementation_only_when_the_last_ends(tiny_omni):
    engine = make_engine(EngineSpec(str(tiny_omni)))
    config = engine.loaded.model.config.get_text_config()
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with cc.cascade(engine.loaded.model, None):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    entered.wait(10)
    with cc.cascade(engine.loaded.model, None):
        assert config._attn_implementation == cc.NAME
    assert config._attn_implementation == cc.NAME  # the other thread's block is still open
    release.set()
    thread.join()
    assert config._attn_implementation == "sdpa"


def test_outside_a_block_the_registered_function_is_plain_sdpa(tiny_omni, silent_requests):
    """A generate on a thread with no open block gets sdpa even while the config names the cascade."""
    engine = make_engine(EngineSpec(str(tiny_omni), shared_prefix=False, batch_size=8))
    expected = engine.generate(silent_requests[:4], Sampling(max_new_tokens=4))
    cc.register()
    config = engine.loaded.model.config.get_text_config()
    config._attn_implementation = cc.NAME
    try:
        assert engine.generate(silent_requests[:4], Sampling(max_new_tokens=4)) == expected
    finally:
        config._attn_implementation = "sdpa"
