"""``audiomcq bench train``: step time, tokens/s, MFU and peak memory of SFT (per length profile), and GRPO rollouts.

``--size tiny`` (default) runs on the CPU in seconds; ``--size 3b`` builds a random-initialised model of
Qwen2.5-Omni-3B's thinker shape and is meant for a GPU (bf16, gradient checkpointing, vLLM rollouts when vLLM is
installed). ``--profile`` picks the samples' lengths (``audiomcq.bench.corpus``: ``synthetic``, the demo's short
samples; ``audiomcq``, real AudioMCQ shapes with 30 s clips and CoT answers). SFT tokens are the non-padding input
tokens the trainer counted; GRPO rollout tokens are the completion tokens sampled per step (mean completion length x
completions per step). Every figure is a median over the timed steps (the first, a warm-up, is skipped) with its
range across steps, since one step says little on a shared machine; throughputs are per step too (a step's tokens
over its seconds). Peak memory is CUDA's max allocated during the SFT run on a GPU, the process's peak RSS (its
high-water mark reset just before) on CPU.

Several values for ``--profile``/``--batch``/``--packing``/``--attention``/``--loss`` make a sweep: each
combination trains SFT alone on the same random model (built once) and the result is one table (``bench_sweep``).

MFU counts model FLOPs only (6 x parameters x tokens for forward + backward; recomputation from gradient
checkpointing is not credited): the language model's matmul parameters (embeddings and LM head excluded) over the
text tokens, the LM head's over the labelled tokens only (the fused head projects no others on a GPU, and no other
token needs it), plus the audio encoder's over its input positions (50 per second of audio). Labelled tokens per
step are the profile's mean per sample times the batch. The attention score term is left out, which understates MFU
slightly. Peak FLOP/s: dense bf16 of the detected GPU, or ``--peak-tflops``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

from audiomcq.bench.measure import Spread

# Dense bf16 peak TFLOP/s by GPU name fragment (vendor data sheets, without sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}
ENCODER_POSITIONS_PER_SECOND = 50  # 100 mel frames/s, halved by the encoder's strided convolution
SETTINGS = {  # batch and rollout sizes per model size
    "tiny": {"sft_batch": 16, "prompts": 8, "generations": 4, "completion": 16, "gpu_args": {}},
    "3b": {
        "sft_batch": 16,
        "prompts": 4,
        "generations": 8,
        "completion": 128,
        "gpu_args": {"bf16": True, "gradient_checkpointing": True, "optim": "adamw_torch_fused"},
    },
}
# On the CPU the audiomcq profile's samples are ~5x the synthetic ones: a quarter of the batch (and of the prompts)
# keeps a step at about the same tokens and a tiny run well under a minute.
TINY_LONG = {"sft_batch": 4, "prompts": 2}
VLLM_ROLLOUTS = {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.2}


def settings(size: str, profile: str) -> dict[str, Any]:
    """Batch and rollout sizes for ``size`` on ``profile``."""
    return {**SETTINGS[size], **(TINY_LONG if size == "tiny" and profile == "audiomcq" else {})}


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def peak_tflops(explicit: float | None = None) -> float | None:
    """The given peak, else the detected GPU's dense bf16 peak, else None (no MFU on an unknown device)."""
    if explicit:
        return explicit
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def flop_parameters(model: Any) -> dict[str, int]:
    """Parameters that do matmuls per token: the language model's (embeddings and LM head excluded), the LM head's
    and the audio encoder's. The vision tower never runs on audio questions and is not counted."""
    counts = {"text": 0, "head": 0, "audio": 0}
    for name, p in model.named_parameters():
        if "audio_tower" in name:
            counts["audio"] += p.numel()
        elif name.startswith("lm_head"):
            counts["head"] += p.numel()
        elif "language_model" in name and "embed_tokens" not in name:
            counts["text"] += p.numel()
    return counts


def sft_mfu(
    params: dict[str, int],
    tokens: float,
    audio_seconds: float,
    seconds: float,
    peak: float,
    label_tokens: float | None = None,
) -> float:
    """Model-FLOPs utilisation of a training span that saw ``tokens`` text tokens (``label_tokens`` of them
    labelled; None: all) and ``audio_seconds`` of audio."""
    head_tokens = tokens if label_tokens is None else label_tokens
    flops = 6 * (
        params["text"] * tokens
        + params.get("head", 0) * head_tokens
        + params["audio"] * audio_seconds * ENCODER_POSITIONS_PER_SECOND
    )
    return flops / (seconds * peak * 1e12)


def _reset_peak_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError):  # Linux: writing 5 resets the peak-RSS mark (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")


def _peak_memory() -> tuple[float, str]:
    """MiB and what they are: CUDA max allocated, or peak RSS since the last reset."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20, "CUDA max allocated"
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024, "peak RSS"
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS (whole process)"


def prepare(work: Path, size: str, profiles: list[str]) -> dict[str, Any]:
    """The profiles' corpora and one random model of ``size`` whose tokenizer knows all their texts."""
    import torch

    from audiomcq.bench import corpus as bench_corpus
    from audiomcq.models.tiny import OMNI_3B, TinySpec, build_tiny, save_tiny

    corpora = {p: bench_corpus.write_profile(p, work / "corpus" / p) for p in profiles}
    texts = [t for c in corpora.values() for t in bench_corpus.tokenizer_texts(c["data"])]
    model, processor = build_tiny("qwen2_5_omni", texts, OMNI_3B if size == "3b" else TinySpec())
    gpu = torch.cuda.is_available() and bool(SETTINGS[size]["gpu_args"])
    path = save_tiny(model.to(torch.bfloat16) if gpu else model, processor, work / "model")
    params = {**flop_parameters(model), "total": sum(p.numel() for p in model.parameters())}
    del model
    for corpus in corpora.values():
        lengths = bench_corpus.sample_lengths(processor, corpus["data"], corpus["audio_root"], corpus["cot"])
        kept = [n for n in lengths if n <= bench_corpus.MAX_LENGTH]
        corpus["tokens"] = {
            "mean": statistics.mean(kept),
            "min": min(kept),
            "max": max(kept),
            "samples": len(kept),
            "skipped": len(lengths) - len(kept),
        }
        corpus["labels"] = _mean_label_tokens(processor, corpus)
        corpus["clip_seconds"] = _mean_clip_seconds(corpus)
    return {"size": size, "model": path, "params": params, "corpora": corpora, "gpu": gpu}


def _mean_label_tokens(processor: Any, corpus: dict[str, Any]) -> float:
    from audiomcq.data.io import read_records
    from audiomcq.models.batch import record_target

    eos, tok = processor.tokenizer.eos_token, processor.tokenizer
    return statistics.mean(
        len(tok(record_target(r, eos, corpus["cot"]), add_special_tokens=False)["input_ids"])
        for r in read_records(corpus["data"])
    )


def _mean_clip_seconds(corpus: dict[str, Any]) -> float:
    import soundfile as sf

    from audiomcq.data.io import read_records

    root = Path(corpus["audio_root"])
    return statistics.mean(sf.info(str(root / r.audio_path)).duration for r in read_records(corpus["data"]))


def sft_run(
    prep: dict[str, Any],
    profile: str,
    out: Path,
    steps: int,
    batch: int,
    checkpointing: bool = True,
    kernels: dict[str, Any] | None = None,
    peak: float | None = None,
) -> dict[str, Any]:
    """Train SFT for ``steps`` on ``profile``'s records; step times, throughput, MFU and peak memory."""
    from audiomcq.bench.corpus import MAX_LENGTH
    from audiomcq.train.kernels import resolve
    from audiomcq.train.sft import train_sft

    corpus, switches = prep["corpora"][profile], resolve(kernels)
    gpu = SETTINGS[prep["size"]]["gpu_args"] if prep["gpu"] else {}
    gpu = {**gpu, "gradient_checkpointing": False} if gpu and not checkpointing else gpu
    # packed rows have no padding (and no attention mask to count it with): every input token is a real one
    counting = "all" if switches["packing"] else "non_padding"
    args = {"include_num_input_tokens_seen": counting, "max_length": MAX_LENGTH, **gpu}
    _reset_peak_memory()
    train_sft(
        prep["model"],
        corpus["data"],
        corpus["audio_root"],
        out,
        steps=steps,
        lr=1e-4,
        batch_size=batch,
        logging_steps=1,
        trainer_args=args,
        kernels=switches,
        cot=corpus["cot"],
    )
    memory, memory_kind = _peak_memory()
    sft = [r for r in _rows(out) if "loss" in r]
    timed = sft[1:]  # the first step warms up kernels and allocators
    seconds = sum(r["step_seconds"] for r in timed)
    step_tokens = [b["num_input_tokens_seen"] - a["num_input_tokens_seen"] for a, b in itertools.pairwise(sft)]
    audio, labels = corpus["clip_seconds"] * batch, corpus["labels"] * batch  # per step
    mfu_peak = peak_tflops(peak)
    step_mfu = (
        [
            sft_mfu(prep["params"], t, audio, r["step_seconds"], mfu_peak, labels)
            for t, r in zip(step_tokens, timed, strict=True)
        ]
        if mfu_peak
        else None
    )
    tokens = sum(step_tokens)
    return {
        "profile": profile,
        "batch": batch,
        "kernels": switches,
        "steps": len(sft),
        "step_seconds": Spread.of([r["step_seconds"] for r in timed]).to_dict(),
        "tokens_per_second": tokens / seconds,
        "tokens_per_second_steps": Spread.of(
            [t / r["step_seconds"] for t, r in zip(step_tokens, timed, strict=True)]
        ).to_dict(),
        "mfu": sft_mfu(prep["params"], tokens, audio * len(timed), seconds, mfu_peak, labels * len(timed))
        if mfu_peak
        else None,
        "mfu_steps": Spread.of(step_mfu).to_dict() if step_mfu else None,
        "peak_tflops": mfu_peak,
        "memory_mib": memory,
        "memory_kind": memory_kind,
        "gradient_checkpointing": bool(gpu.get("gradient_checkpointing")),
    }


def grpo_run(prep: dict[str, Any], profile: str, out: Path, steps: int) -> dict[str, Any]:
    """A short GRPO on ``profile``'s prompts: step times and rollout tokens/s."""
    from audiomcq.train.grpo import train_grpo

    cfg, corpus = settings(prep["size"], profile), prep["corpora"][profile]
    gpu = cfg["gpu_args"] if prep["gpu"] else {}
    per_step = cfg["prompts"] * cfg["generations"]
    vllm = bool(gpu) and _has_vllm()
    if gpu:  # release the SFT trainer's optimizer state before GRPO (and vLLM) claim the memory
        _reset_peak_memory()
    args = {**gpu, **(VLLM_ROLLOUTS if vllm else {})}
    train_grpo(
        prep["model"],
        corpus["data"],
        corpus["audio_root"],
        out,
        steps=max(2, steps // 2),
        lr=1e-5,
        prompts_per_step=cfg["prompts"],
        num_generations=cfg["generations"],
        temperature=1.0,
        max_completion_length=cfg["completion"],
        trainer_args=args,
    )
    grpo = [r for r in _rows(out) if "reward" in r][1:]
    completion_tokens = sum(r["completions/mean_length"] * per_step for r in grpo)
    return {
        "steps": len(grpo) + 1,
        "step_seconds": Spread.of([r["step_seconds"] for r in grpo]).to_dict(),
        "rollout_tokens_per_second": completion_tokens / sum(r["step_seconds"] for r in grpo),
        "rollout_tokens_per_second_steps": Spread.of(
            [r["completions/mean_length"] * per_step / r["step_seconds"] for r in grpo]
        ).to_dict(),
        "completions_per_step": per_step,
        "rollouts": "vllm" if vllm else "transformers",
    }


def _header(prep: dict[str, Any]) -> dict[str, Any]:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    corpora = {p: {k: c[k] for k in ("tokens", "labels", "clip_seconds")} for p, c in prep["corpora"].items()}
    return {"size": prep["size"], "device": device, "params": prep["params"], "corpora": corpora}


def bench_train(
    work: str | Path,
    steps: int = 20,
    size: str = "tiny",
    peak: float | None = None,
    sft_batch: int | None = None,
    checkpointing: bool = True,
    grpo: bool = True,
    profiles: tuple[str, ...] = ("synthetic",),
    kernels: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """SFT (and GRPO unless ``grpo`` is false) on a fresh random model of ``size``, for each profile; returns step
    times, throughputs, MFU and peak memory. ``sft_batch``, ``checkpointing`` (gradient checkpointing on a GPU) and
    ``kernels`` (``sft.kernels`` switches) vary the SFT runs."""
    work = Path(work)
    prep = prepare(work, size, list(profiles))
    result = {**_header(prep), "profiles": {}}
    for profile in profiles:
        batch = sft_batch or settings(size, profile)["sft_batch"]
        runs = {"sft": sft_run(prep, profile, work / "sft" / profile, steps, batch, checkpointing, kernels, peak)}
        if grpo:
            runs["grpo"] = grpo_run(prep, profile, work / "grpo" / profile, steps)
        result["profiles"][profile] = runs
    return result


def bench_sweep(
    work: str | Path,
    steps: int,
    size: str,
    peak: float | None,
    configs: list[dict[str, Any]],
    checkpointing: bool = True,
) -> dict[str, Any]:
    """SFT alone for each of ``configs`` (``profile``, ``batch``, ``kernels``) on one random model; one row each."""
    work = Path(work)
    prep = prepare(work, size, sorted({c["profile"] for c in configs}))
    rows = []
    for i, config in enumerate(configs):
        batch = config["batch"] or settings(size, config["profile"])["sft_batch"]
        rows.append(
            sft_run(
                prep, config["profile"], work / "sweep" / str(i), steps, batch, checkpointing, config["kernels"], peak
            )
        )
    return {**_header(prep), "rows": rows}


def _has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def sweep_configs(
    profiles: list[str], batches: list[int | None], packing: list[str], attention: list[str], losses: list[str]
) -> list[dict[str, Any]]:
    """Every valid profile x batch x switches combination (varlen attention without packing is left out); an
    attention this machine cannot run is refused before anything trains."""
    from audiomcq.errors import AudioMCQError
    from audiomcq.train.kernels import check_attention, resolve

    for name in dict.fromkeys(attention):
        check_attention(name)
    configs = []
    for profile, batch, pack, attn, loss in itertools.product(profiles, batches, packing, attention, losses):
        if attn == "varlen" and pack == "off":
            continue
        kernels = resolve({"packing": pack == "on", "attention": attn, "loss": loss})
        configs.append({"profile": profile, "batch": batch, "kernels": kernels})
    if not configs:
        raise AudioMCQError("no valid combination of --packing/--attention/--loss (varlen needs --packing on)")
    return configs
