"""``audiomcq bench train``: step time and tokens/s of SFT and GRPO, and SFT model-FLOPs utilisation (MFU).

``--size tiny`` (default) runs on the CPU in seconds; ``--size 3b`` builds a random-initialised model of
Qwen2.5-Omni-3B's thinker shape and is meant for a GPU (bf16, gradient checkpointing, vLLM rollouts when vLLM is
installed). SFT tokens are the non-padding input tokens the trainer counted; GRPO rollout tokens are the completion
tokens sampled per step (mean completion length x completions per step). Every figure is a median over the timed
steps (the first, a warm-up, is skipped) with its range across steps, since one step says little on a shared
machine; throughputs are per step too (a step's tokens over its seconds).

MFU counts model FLOPs only (6 x parameters x tokens for forward + backward; recomputation from gradient
checkpointing is not credited): the language model's matmul parameters (embeddings excluded) over the text tokens,
plus the audio encoder's over its input positions (50 per second of audio). The attention score term is left out,
which understates MFU slightly at these short sequences. Peak FLOP/s: dense bf16 of the detected GPU, or
``--peak-tflops``.
"""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path
from typing import Any

from audiomcq.timing import Spread

# Dense bf16 peak TFLOP/s by GPU name fragment (vendor data sheets, without sparsity).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}
ENCODER_POSITIONS_PER_SECOND = 50  # 100 mel frames/s, halved by the encoder's strided convolution
SETTINGS = {  # batch and rollout sizes per model size
    "tiny": {"sft_batch": 16, "prompts": 8, "generations": 4, "completion": 16, "gpu_args": {}},
    "3b": {"sft_batch": 16, "prompts": 4, "generations": 8, "completion": 128,
           "gpu_args": {"bf16": True, "gradient_checkpointing": True, "optim": "adamw_torch_fused"}},
}  # fmt: skip
VLLM_ROLLOUTS = {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.2}


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
    """Parameters that do matmuls per token: the language model's (embeddings excluded, LM head included) and the
    audio encoder's. The vision tower never runs on audio questions and is not counted."""
    counts = {"text": 0, "audio": 0}
    for name, p in model.named_parameters():
        if "audio_tower" in name:
            counts["audio"] += p.numel()
        elif ("language_model" in name or name.startswith("lm_head")) and "embed_tokens" not in name:
            counts["text"] += p.numel()
    return counts


def sft_mfu(params: dict[str, int], tokens: float, audio_seconds: float, seconds: float, peak: float) -> float:
    """Model-FLOPs utilisation of a training span that saw ``tokens`` text tokens and ``audio_seconds`` of audio."""
    flops = 6 * (params["text"] * tokens + params["audio"] * audio_seconds * ENCODER_POSITIONS_PER_SECOND)
    return flops / (seconds * peak * 1e12)


def bench_train(work: str | Path, steps: int = 20, size: str = "tiny", peak: float | None = None,
                sft_batch: int | None = None, checkpointing: bool = True,
                grpo: bool = True) -> dict[str, Any]:  # fmt: skip
    """Run a short SFT and GRPO on a fresh random model of ``size``; returns step times, throughputs and MFU.
    ``sft_batch``, ``checkpointing`` (gradient checkpointing on a GPU) and ``grpo`` vary the run for MFU sweeps."""
    import soundfile as sf
    import torch

    from audiomcq.data.io import read_records
    from audiomcq.models.tiny import OMNI_3B, TinySpec, build_tiny, save_tiny, tokenizer_texts
    from audiomcq.synth import generate
    from audiomcq.train.grpo import train_grpo
    from audiomcq.train.sft import train_sft

    work, cfg = Path(work), SETTINGS[size]
    cfg = {**cfg, "sft_batch": sft_batch or cfg["sft_batch"]}
    gpu = cfg["gpu_args"] if torch.cuda.is_available() else {}
    gpu = {**gpu, "gradient_checkpointing": False} if gpu and not checkpointing else gpu
    generate(work / "corpus", 256, seed=7, eval_n=0)
    data = work / "corpus" / "train.jsonl"
    model, processor = build_tiny("qwen2_5_omni", tokenizer_texts([data]), OMNI_3B if size == "3b" else TinySpec())
    tiny = save_tiny(model.to(torch.bfloat16) if gpu else model, processor, work / "model")
    params = {**flop_parameters(model), "total": sum(p.numel() for p in model.parameters())}
    del model
    train_sft(tiny, data, work / "corpus", work / "sft", steps=steps, lr=1e-4, batch_size=cfg["sft_batch"],
              logging_steps=1, trainer_args={"include_num_input_tokens_seen": "non_padding", **gpu})  # fmt: skip
    sft = [r for r in _rows(work / "sft") if "loss" in r]
    timed = sft[1:]  # the first step warms up kernels and allocators
    seconds = sum(r["step_seconds"] for r in timed)
    tokens = sft[-1]["num_input_tokens_seen"] - sft[0]["num_input_tokens_seen"]
    step_tokens = [b["num_input_tokens_seen"] - a["num_input_tokens_seen"] for a, b in itertools.pairwise(sft)]
    records = read_records(data)
    clip_seconds = statistics.mean(sf.info(str(work / "corpus" / r.audio_path)).duration for r in records)
    audio_seconds = clip_seconds * cfg["sft_batch"] * len(timed)
    mfu_peak = peak_tflops(peak)
    step_mfu = [sft_mfu(params, t, clip_seconds * cfg["sft_batch"], r["step_seconds"], mfu_peak)
                for t, r in zip(step_tokens, timed, strict=True)] if mfu_peak else None  # fmt: skip
    result: dict[str, Any] = {
        "size": size,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "params": params,
        "sft": {
            "steps": len(sft),
            "batch": cfg["sft_batch"],
            "step_seconds_median": statistics.median(r["step_seconds"] for r in timed),
            "step_seconds": Spread.of([r["step_seconds"] for r in timed]).to_dict(),
            "tokens_per_second": tokens / seconds,
            "tokens_per_second_steps": Spread.of(
                [t / r["step_seconds"] for t, r in zip(step_tokens, timed, strict=True)]
            ).to_dict(),
            "mfu": sft_mfu(params, tokens, audio_seconds, seconds, mfu_peak) if mfu_peak else None,
            "mfu_steps": Spread.of(step_mfu).to_dict() if step_mfu else None,
            "peak_tflops": mfu_peak,
        },
    }
    if gpu:  # release the SFT trainer's optimizer state before GRPO (and vLLM) claim the memory
        import gc

        gc.collect()
        torch.cuda.empty_cache()
    result["sft"]["gradient_checkpointing"] = bool(gpu.get("gradient_checkpointing"))
    if not grpo:
        return result
    per_step = cfg["prompts"] * cfg["generations"]
    vllm = bool(gpu) and _has_vllm()
    grpo_args = {**gpu, **(VLLM_ROLLOUTS if vllm else {})}
    train_grpo(tiny, data, work / "corpus", work / "grpo", steps=max(2, steps // 2), lr=1e-5,
               prompts_per_step=cfg["prompts"], num_generations=cfg["generations"], temperature=1.0,
               max_completion_length=cfg["completion"], trainer_args=grpo_args)  # fmt: skip
    grpo = [r for r in _rows(work / "grpo") if "reward" in r]
    completion_tokens = sum(r["completions/mean_length"] * per_step for r in grpo[1:])
    result["grpo"] = {
        "steps": len(grpo),
        "step_seconds_median": statistics.median(r["step_seconds"] for r in grpo[1:]),
        "step_seconds": Spread.of([r["step_seconds"] for r in grpo[1:]]).to_dict(),
        "rollout_tokens_per_second": completion_tokens / sum(r["step_seconds"] for r in grpo[1:]),
        "rollout_tokens_per_second_steps": Spread.of(
            [r["completions/mean_length"] * per_step / r["step_seconds"] for r in grpo[1:]]
        ).to_dict(),
        "completions_per_step": per_step,
        "rollouts": "vllm" if vllm else "transformers",
    }
    return result


def _has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None
