"""GRPO rollouts through vLLM (trl's colocate mode) with the audio attached, for both families.

trl 1.16 hands vLLM token ids plus *images* only, starts vLLM from ``model.name_or_path`` and pushes weights under
their in-memory names. For audio LLMs that gives audio-blind rollouts, a thinker directory vLLM has
no registry entry for, and names vLLM's ``load_weights`` does not know. Three small fixes:

1. the policy is exported once in the layout vLLM loads (``models.export``) and vLLM starts from that copy;
2. each prompt's waveform goes to vLLM as ``multi_modal_data={"audio": (array, 16000)}``, in prompt order;
3. weight names are mapped from transformers-5 in-memory names to the checkpoint names vLLM loads (for Omni,
   under ``thinker.``): exactly the names of the exported files, which a CPU test checks.

Server mode sends token ids only, so it would roll out without audio: refused. Tensor parallelism > 1 gathers
prompts across ranks without their audio: refused too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)

# (in-memory prefix, name vLLM loads) per model type, first match wins.
VLLM_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "qwen2_5_omni_thinker": (
        ("model.audio_tower.", "thinker.audio_tower."),
        ("model.visual.", "thinker.visual."),
        ("model.language_model.", "thinker.model."),
        ("lm_head.", "thinker.lm_head."),
    ),
    "qwen2_audio": (
        ("model.audio_tower.", "audio_tower."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
        ("model.language_model.", "language_model.model."),
        ("lm_head.", "language_model.lm_head."),
    ),
}


def vllm_name(name: str, model_type: str) -> str:
    """The name vLLM's ``load_weights`` expects for the in-memory parameter ``name``."""
    if model_type not in VLLM_NAMES:
        raise AudioMCQError(f"no vLLM weight-name mapping for model type {model_type!r}")
    for prefix, target in VLLM_NAMES[model_type]:
        if name.startswith(prefix):
            return target + name[len(prefix) :]
    raise AudioMCQError(f"parameter {name!r} of a {model_type} model has no vLLM name")


def prompt_audio(prompts: Sequence[Any]) -> list[tuple[Any, int] | None]:
    """Each conversational prompt's audio block as ``(16 kHz waveform, 16000)`` (None when it has none)."""
    from audiomcq.audio import SR, load_audio

    out: list[tuple[Any, int] | None] = []
    loaded: dict[str, Any] = {}  # trl repeats each prompt G times: read each file once per batch
    for messages in prompts:
        blocks = [b for m in messages if isinstance(m.get("content"), list) for b in m["content"]]
        paths = [b.get("audio") for b in blocks if b.get("type") == "audio" and b.get("audio") is not None]
        if len(paths) > 1:
            raise AudioMCQError(f"a GRPO prompt has {len(paths)} audio blocks; rollouts support one")
        if paths and paths[0] not in loaded:
            loaded[paths[0]] = load_audio(paths[0])
        out.append((loaded[paths[0]], SR) if paths else None)
    return out


class AudioPromptLLM:
    """Wraps trl's ``vllm.LLM``: every ``generate`` call gets the current batch's audio, prompt by prompt."""

    def __init__(self, llm: Any, audio: Callable[[], list[tuple[Any, int] | None]]) -> None:
        self._llm = llm
        self._audio = audio

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def generate(self, prompts: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        audio = self._audio()
        if len(audio) != len(prompts):
            raise AudioMCQError(f"{len(prompts)} vLLM prompts but audio for {len(audio)}: batch out of step")
        pairs = zip(prompts, audio, strict=True)
        rows = [{**p, "multi_modal_data": {"audio": a}} if a is not None else p for p, a in pairs]
        return self._llm.generate(rows, *args, **kwargs)


def prepare_policy(model: Any, model_dir: str | Path, out_dir: str | Path) -> Path:
    """Export the starting policy where vLLM can load it and point ``model.name_or_path`` (what trl starts vLLM
    from) at it; the beta > 0 reference model comes from our loader (``AudioGRPOTrainer``), not from a path."""
    from audiomcq.models.export import export_for_vllm
    from audiomcq.train.launch import barrier, is_main

    target = Path(out_dir) / "vllm-start"
    if is_main():
        export_for_vllm(model_dir, target)
    barrier()
    model.name_or_path = str(target)
    return target


def enable_audio_rollouts(trainer: Any) -> None:
    """Attach the audio to trl's vLLM rollouts and map the weight names it syncs."""
    gen = trainer.vllm_generation
    if gen.mode != "colocate":
        raise AudioMCQError(
            "vllm_mode=server sends token ids only (trl 1.16), so rollouts would not hear the audio; "
            "use vllm_mode=colocate"
        )
    if gen.tensor_parallel_size != 1:
        raise AudioMCQError("vllm_tensor_parallel_size > 1 gathers prompts without their audio; use 1")
    model_type = trainer.model.config.model_type
    default_name = gen._fix_param_name_to_vllm

    def remapped(name: str, extra_prefixes: list[str] | None = None) -> str:
        return vllm_name(default_name(name, extra_prefixes), model_type)

    gen._fix_param_name_to_vllm = remapped  # instance attribute: trl calls it for every synced parameter
    gen.llm = AudioPromptLLM(gen.llm, lambda: trainer._rollout_audio)
    log.info("vLLM rollouts carry audio; weights sync under %s names", model_type)
