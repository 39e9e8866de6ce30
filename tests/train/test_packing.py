"""Padding-free SFT packing and the kernel switches, on the tiny models of both families.

A packed batch must train exactly as the padded one (same loss, same gradients), no sample may see another (checked
by changing one sample's audio: only that sample's outputs may move, and the check is shown to fail when the
samples are laid out without restarting positions), and trl's fused LM head must give the plain full-logits loss.
"""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("trl")

FAMILIES = ["tiny_omni", "tiny_qwen2_audio"]


def _trainer(model_dir, corpus, out, dtype="auto", **kernels):
    from audiomcq.train.sft import build_sft_trainer

    trainer, _ = build_sft_trainer(
        model_dir, corpus / "train.jsonl", corpus, out, steps=1, batch_size=4, kernels=kernels, dtype=dtype
    )
    return trainer


def _batch(trainer, n=4):
    rows = [trainer.train_dataset[i] for i in range(n)]
    return trainer._prepare_inputs(trainer.data_collator(rows))


def _loss_and_grads(trainer, inputs):
    model = trainer.model
    model.train()
    model.zero_grad()
    loss = trainer.compute_loss(model, dict(inputs))
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(a, b, rtol=1e-4, atol=1e-6):
    import torch

    (loss_a, grads_a), (loss_b, grads_b) = a, b
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=rtol, atol=atol, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("family", FAMILIES)
def test_a_packed_batch_has_the_padded_loss_and_gradients(family, attention, request, synth_corpus, tmp_path):
    model_dir = request.getfixturevalue(family)
    padded = _trainer(model_dir, synth_corpus, tmp_path / "padded", attention=attention)
    packed = _trainer(model_dir, synth_corpus, tmp_path / "packed", attention=attention, packing=True)
    a, b = _batch(padded), _batch(packed)
    assert a["input_ids"].shape[0] == 4 and "attention_mask" in a
    # one row, no padding: every real token of the padded batch, positions restarting per sample, the clips as before
    assert b["input_ids"].shape == (1, int(a["attention_mask"].sum())) and "attention_mask" not in b
    assert (b["position_ids"][0] == 0).sum() == 4
    assert (b["input_features"] == a["input_features"]).all()
    assert (b["labels"] != -100).sum() == (a["labels"] != -100).sum() > 0
    _assert_same(_loss_and_grads(padded, a), _loss_and_grads(packed, b))


def _sample_logits(model, inputs, starts):
    import torch

    with torch.no_grad():
        logits = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False).logits[0]
    return [logits[a:b] for a, b in itertools.pairwise(starts)]


def _moved(before, after):
    return [float((x - y).abs().max()) for x, y in zip(before, after, strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_packed_samples_never_see_each_other_and_keep_their_own_audio(family, request, synth_corpus, tmp_path):
    """Change the first sample's clip: its own outputs move (the audio reaches its sample), the others' must not.
    The same check catches the leak when the row's positions do not restart (and, for Omni, when the text-position
    row that marks the samples is missing)."""
    import torch

    from audiomcq.train.packing import sample_starts

    trainer = _trainer(request.getfixturevalue(family), synth_corpus, tmp_path, packing=True)
    model, inputs = trainer.model, _batch(trainer)
    starts = sample_starts(inputs["position_ids"])
    louder = {**inputs, "input_features": inputs["input_features"].clone()}
    louder["input_features"][0] += 1.0

    moved = _moved(_sample_logits(model, inputs, starts), _sample_logits(model, louder, starts))
    assert moved[0] > 1e-4 and max(moved[1:]) < 1e-6, moved

    leaky = [torch.arange(inputs["input_ids"].shape[1])[None]]  # one long sample: attention crosses the samples
    if family == "tiny_omni":
        leaky.append(inputs["position_ids"][None].expand(3, -1, -1))  # 3-D positions without the text row
    for positions in leaky:
        before = _sample_logits(model, {**inputs, "position_ids": positions}, starts)
        after = _sample_logits(model, {**louder, "position_ids": positions}, starts)
        assert max(_moved(before, after)[1:]) > 1e-4  # the check above would have failed


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_the_fused_lm_head_loss_and_gradients_equal_the_full_logits_ones(family, request, synth_corpus, tmp_path):
    model_dir = request.getfixturevalue(family)
    fused = _trainer(model_dir, synth_corpus, tmp_path / "fused")
    full = _trainer(model_dir, synth_corpus, tmp_path / "full", loss="full")
    seen = []
    full.model.lm_head.register_forward_hook(lambda *a: seen.append("full"))
    fused.model.lm_head.register_forward_hook(lambda *a: seen.append("fused"))
    _assert_same(_loss_and_grads(full, _batch(full)), _loss_and_grads(fused, _batch(fused)))
    assert seen == ["full"]  # the fused head never runs the LM head over the batch: no whole-batch logits


@pytest.mark.slow
def test_packing_off_trains_exactly_as_before(tiny_omni, synth_corpus, tmp_path):
    """The default switches change nothing: the same batches and, step by step, the same losses as without them."""
    from audiomcq.train.sft import train_sft

    data = synth_corpus / "train.jsonl"
    plain = train_sft(tiny_omni, data, synth_corpus, tmp_path / "a", steps=3, lr=1e-3, batch_size=4, logging_steps=1)
    defaults = {"packing": False, "attention": "sdpa", "loss": "fused"}
    switched = train_sft(
        tiny_omni,
        data,
        synth_corpus,
        tmp_path / "b",
        steps=3,
        lr=1e-3,
        batch_size=4,
        logging_steps=1,
        kernels=defaults,
    )
    assert plain["losses"] == switched["losses"] and len(plain["losses"]) == 3


@pytest.mark.slow
def test_a_packed_sft_run_trains_through_the_cli(tiny_omni, synth_corpus, tmp_path):
    from audiomcq.cli import main

    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "sft",
                "--model",
                str(tiny_omni),
                "--data",
                str(synth_corpus / "train.jsonl"),
                "--audio-root",
                str(synth_corpus),
                "--out",
                str(out),
                "--recipe",
                "smoke",
                "--set",
                "sft.kernels.packing=true",
                "--set",
                "sft.save_steps=null",
            ]
        )
        == 0
    )
    assert (out / "final" / "config.json").is_file()


def test_the_switches_refuse_what_they_cannot_honour_in_one_line(monkeypatch):
    import torch

    from audiomcq.errors import AudioMCQError
    from audiomcq.train import kernels
    from audiomcq.train.packing import enable_packing

    assert kernels.resolve(None) == {"packing": False, "attention": "sdpa", "loss": "fused"}
    for bad, match in (
        ({"pack": True}, "unknown sft.kernels"),
        ({"attention": "flex"}, "attention must be one of"),
        ({"loss": "liger"}, "loss must be one of"),
        ({"packing": "yes"}, "true or false"),
    ):
        with pytest.raises(AudioMCQError, match=match):
            kernels.resolve(bad)
    if not torch.cuda.is_available():
        with pytest.raises(AudioMCQError, match="needs a CUDA GPU and the flash-attn package"):
            kernels.check_attention("flash_attention_2")
    kernels.check_attention("sdpa")
    with pytest.raises(AudioMCQError, match="no packed layout known"):
        enable_packing(object(), "llama", "sdpa")
    kernels.check_optim("adamw_torch_fused", torch.float32)  # torch 2.13 has a fused AdamW on CPU

    def refuse(*args, **kwargs):
        raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")

    monkeypatch.setattr(torch.optim, "AdamW", refuse)
    with pytest.raises(AudioMCQError, match=r"set sft\.trainer_args\.optim=adamw_torch"):
        kernels.check_optim("adamw_torch_fused", torch.float32)
    kernels.check_optim("adamw_torch", torch.float32)


def test_trl_packing_is_refused_for_the_audio_collator(tiny_omni, synth_corpus, tmp_path):
    from audiomcq.errors import AudioMCQError
    from audiomcq.train.sft import build_sft_trainer

    with pytest.raises(AudioMCQError, match=r"use sft\.kernels\.packing"):
        build_sft_trainer(
            tiny_omni, synth_corpus / "train.jsonl", synth_corpus, tmp_path, trainer_args={"packing": True}
        )


def _reference_varlen(calls):
    """torch's CUDA varlen kernel on CPU: causal sdpa over each sample of the row separately."""
    import torch.nn.functional as F

    def run(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False):
        assert window_size == (-1, 0) and cu_q is cu_k and max_q == max(b - a for a, b in itertools.pairwise(cu_q))
        calls.append(len(cu_q) - 1)
        parts = []
        for a, b in itertools.pairwise(cu_q.tolist()):
            qs, ks, vs = (t[a:b].transpose(0, 1)[None] for t in (q, k, v))
            out = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale, enable_gqa=enable_gqa)
            parts.append(out[0].transpose(0, 1))
        return __import__("torch").cat(parts)

    return run


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_varlen_attention_wiring_matches_padded_sdpa(family, request, synth_corpus, tmp_path, monkeypatch):
    """The varlen switch on CPU, torch's CUDA kernel replaced by a per-sample reference: registered for the language
    model only, fed the packed row's sample boundaries, the same loss and gradients as padded sdpa."""
    from audiomcq.train import kernels, varlen

    calls = []
    monkeypatch.setattr(varlen, "kernel", _reference_varlen(calls))
    monkeypatch.setattr(kernels, "check_attention", lambda name: None)
    model_dir = request.getfixturevalue(family)
    padded = _trainer(model_dir, synth_corpus, tmp_path / "padded")
    packed = _trainer(model_dir, synth_corpus, tmp_path / "packed", attention="varlen", packing=True)
    assert packed.model.model.language_model.config._attn_implementation == varlen.NAME
    assert packed.model.model.audio_tower.config._attn_implementation == "sdpa"
    _assert_same(_loss_and_grads(padded, _batch(padded)), _loss_and_grads(packed, _batch(packed)))
    assert calls == [4, 4]  # both layers of the tiny language model, four samples each


def test_varlen_is_refused_without_packing_or_cuda():
    import torch

    from audiomcq.errors import AudioMCQError
    from audiomcq.train import kernels

    with pytest.raises(AudioMCQError, match="packed batches only"):
        kernels.resolve({"attention": "varlen"})
    if not torch.cuda.is_available():
        with pytest.raises(AudioMCQError, match="CUDA only"):
            kernels.check_attention("varlen")


@pytest.mark.gpu
@pytest.mark.parametrize("family", FAMILIES)
def test_varlen_on_the_gpu_matches_padded_sdpa_and_keeps_samples_apart(family, request, synth_corpus, tmp_path):
    """torch's real varlen kernel (bf16 on CUDA) against padded sdpa, and the one-sample audio change."""
    import torch

    from audiomcq.train.packing import sample_starts

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model_dir = request.getfixturevalue(family)
    padded = _trainer(model_dir, synth_corpus, tmp_path / "padded", dtype="bfloat16")
    packed = _trainer(model_dir, synth_corpus, tmp_path / "packed", dtype="bfloat16", attention="varlen", packing=True)
    (loss_a, grads_a), (loss_b, grads_b) = (
        _loss_and_grads(padded, _batch(padded)),
        _loss_and_grads(packed, _batch(packed)),
    )
    assert loss_b == pytest.approx(loss_a, rel=2e-2)
    flat_a, flat_b = (torch.cat([g[n].float().flatten() for n in sorted(g)]) for g in (grads_a, grads_b))
    assert torch.nn.functional.cosine_similarity(flat_a, flat_b, dim=0) > 0.99
    inputs = _batch(packed)
    louder = {**inputs, "input_features": inputs["input_features"].clone()}
    louder["input_features"][0] += 1.0
    starts = sample_starts(inputs["position_ids"])
    moved = _moved(_sample_logits(packed.model, inputs, starts), _sample_logits(packed.model, louder, starts))
    assert moved[0] > 1e-2 and max(moved[1:]) < 1e-3, moved
