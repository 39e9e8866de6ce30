"""GRPO on MCQ records with trl's GRPOTrainer, extended so the audio reaches *every* forward.

trl 1.16 passes the processor's audio features to generation, but its log-probability forwards (policy, old and
reference) carry image inputs only, so stock GRPO trains audio-blind. ``AudioGRPOTrainer`` keeps
the audio features that the processor produced for the prompts, carries them through trl's batch shuffling and
splitting, and injects them into each log-probability forward chunk. Rewards are the paper's (``rewards.py``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from transformers import PrinterCallback
from trl import GRPOConfig, GRPOTrainer

from audiomcq.data.io import read_records
from audiomcq.prompts import build_messages, clean_messages, solution
from audiomcq.train.common import (
    ResumeWeightsMixin,
    apply_freeze,
    checkpointing,
    lora_config,
    make_config,
    run_training,
    within_length,
)
from audiomcq.train.rewards import get_reward

log = logging.getLogger(__name__)
AUDIO_KEYS = ("input_features", "feature_attention_mask")


@contextlib.contextmanager
def extra_forward_kwargs(module: Any, extra: dict[str, Any]) -> Iterator[None]:
    """Add keyword arguments to every call of ``module.forward`` inside the block."""

    def hook(_module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, **extra}

    handle = module.register_forward_pre_hook(hook, with_kwargs=True, prepend=True)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def _trl_init_for(model: Any, reference: Callable[[Any], Any] | None) -> Iterator[None]:
    """What trl's ``GRPOTrainer.__init__`` needs from an audio policy it cannot get itself, for that call only.

    - The reference model (beta > 0): trl rebuilds it from ``config._name_or_path`` through the auto classes, which
      cannot load a hub Qwen2.5-Omni checkpoint (``Qwen2_5OmniModel`` is not a transformers class). It comes from
      ``reference(dtype)`` instead, our own loader, and trl then prepares it as it would its own.
    - ``config.image_token_id``: trl reads it to suppress image tokens, and Qwen2-Audio's config has none. A
      placeholder stands in while trl builds its generation config (which ``generation_kwargs`` then replaces with
      the audio placeholders); the model's config is left exactly as loaded.
    """
    from trl.trainer import grpo_trainer

    original = grpo_trainer.create_model_from_path

    def build_reference(model_id: str, *args: Any, **kwargs: Any) -> Any:
        return reference(kwargs.get("dtype")) if reference else original(model_id, *args, **kwargs)

    config = model.config
    added = not hasattr(config, "image_token_id")
    if added:
        config.image_token_id = getattr(config, "audio_token_index", None)
    grpo_trainer.create_model_from_path = build_reference
    try:
        yield
    finally:
        grpo_trainer.create_model_from_path = original
        if added:
            del config.image_token_id


def load_prompt_audio(prompts: list) -> list:
    """Prompts whose audio blocks carry the waveform from ``audiomcq.audio`` instead of a file name, so the
    processor computes GRPO's features from the very samples SFT, filtering, evaluation and serving use."""
    from audiomcq.audio import load_audio

    waves: dict[str, Any] = {}  # trl repeats each prompt G times: read each file once per batch

    def block(b: dict[str, Any]) -> dict[str, Any]:
        path = b.get("audio")
        if b.get("type") != "audio" or not isinstance(path, str):
            return b
        if path not in waves:
            waves[path] = load_audio(path)
        return {**b, "audio": waves[path]}

    return [
        [{**m, "content": [block(b) for b in m["content"]]} if isinstance(m.get("content"), list) else m for m in p]
        for p in prompts
    ]


class AudioGRPOTrainer(ResumeWeightsMixin, GRPOTrainer):
    """GRPOTrainer whose policy, old-policy and reference forwards all see the prompts' audio features.

    ``model`` is always an instance from our loader (freeze, LoRA and dtype apply to what is trained);
    ``reference(dtype)`` builds the beta > 0 reference the same way."""

    _audio: dict[str, Any] | None = None

    def __init__(self, *args: Any, reference: Callable[[Any], Any] | None = None, **kwargs: Any) -> None:
        model = kwargs.get("model", args[0] if args else None)
        if isinstance(model, str):
            raise TypeError("AudioGRPOTrainer takes a model instance (audiomcq.models.load_model), not a path")
        with _trl_init_for(model, reference):
            super().__init__(*args, **kwargs)

    def _tokenize_prompts(self, prompts: list) -> Any:
        # The processor returns the audio features with the token ids; keep them, batch-first, for the
        # log-probability forwards that trl computes without them.
        import torch

        prompt_ids, images, fields = super()._tokenize_prompts(load_prompt_audio(prompts))
        self._audio = {k: torch.as_tensor(fields[k]) for k in AUDIO_KEYS if k in fields}
        if self.use_vllm:  # the waveforms themselves, for vLLM's multi_modal_data (see vllm_rollout)
            from audiomcq.train.vllm_rollout import prompt_audio

            self._rollout_audio = prompt_audio(prompts)
        return prompt_ids, images, fields

    def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
        inputs = [{**x, "prompt": clean_messages(x["prompt"])} for x in inputs]
        output = super()._generate_and_score_completions(inputs)
        # Attach the audio to the batch so trl's shuffle/split keeps each row with its own features.
        device = output["prompt_ids"].device
        output.update({k: v.to(device) for k, v in (self._audio or {}).items()})
        return output

    def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> Any:
        self._audio = {k: inputs[k] for k in AUDIO_KEYS if k in inputs}
        return super()._compute_loss(model, inputs)

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: Any,
        attention_mask: Any,
        logits_to_keep: int,
        batch_size: int | None = None,
        **kw: Any,
    ) -> tuple[Any, Any, Any]:
        # trl chunks rows by batch_size and forwards each chunk without audio; chunk here instead and hand each
        # chunk's audio rows to the forward through a pre-hook, leaving trl's log-prob maths untouched.
        if not self._audio:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, **kw
            )
        import torch

        size = batch_size or input_ids.size(0)
        logps, entropies, aux = [], [], []
        for start in range(0, input_ids.size(0), size):
            end = min(start + size, input_ids.size(0))
            audio = {k: v[start:end].to(input_ids.device) for k, v in self._audio.items()}
            with extra_forward_kwargs(model, audio):
                lp, ent, ax = super()._get_per_token_logps_and_entropies(
                    model, input_ids[start:end], attention_mask[start:end], logits_to_keep, end - start, **kw
                )
            logps.append(lp)
            entropies.append(ent)
            aux.append(ax)
        return (
            torch.cat(logps, dim=0),
            torch.cat(entropies, dim=0) if entropies[0] is not None else None,
            torch.stack(aux).mean() if aux[0] is not None else None,
        )


def grpo_dataset(records: list[Any], path: str | Path, audio_root: str | Path) -> Any:
    """Conversational prompts whose audio block names the WAV file, plus the ``solution`` column for rewards
    (``path`` names the source in errors)."""
    from datasets import Dataset

    rows = []
    for r in records:
        audio = str((Path(audio_root) / r.audio_path).resolve()) if r.audio_path else None
        rows.append({"prompt": build_messages(r.question, r.choices, audio=audio), "solution": solution(r.answer)})
    if not rows:
        raise ValueError(f"{path}: no records to train on")
    return Dataset.from_list(rows)


def train_grpo(
    model_dir: str | Path,
    data: str | Path,
    audio_root: str | Path,
    out_dir: str | Path,
    final_dir: str | Path | None = None,
    **kw: Any,
) -> dict:
    """GRPO from ``model_dir``; returns the logged mean rewards per step and the final model path."""
    run = run_training(build_grpo_trainer, model_dir, data, audio_root, out_dir, final_dir, **kw)
    history = [e for e in run.pop("log") if "reward" in e]
    return {
        **run,
        "reward": [e["reward"] for e in history],
        "accuracy_reward": [e.get("rewards/accuracy_reward/mean") for e in history],
    }


def build_grpo_trainer(
    model_dir: str | Path,
    data: str | Path,
    audio_root: str | Path,
    out_dir: str | Path,
    *,
    steps: int = -1,
    lr: float = 1e-6,
    prompts_per_step: int = 8,
    num_generations: int = 4,
    temperature: float = 1.0,
    top_k: int | None = None,
    beta: float = 0.0,
    max_completion_length: int = 16,
    rewards: tuple[str, ...] = ("accuracy", "format"),
    save_steps: int | None = None,
    seed: int = 0,
    logging_steps: int = 1,
    reward_weights: dict[str, float] | None = None,
    freeze: dict[str, bool] | None = None,
    lora: dict[str, Any] | None = None,
    trainer_args: dict[str, Any] | None = None,
    trainer_class: type[GRPOTrainer] | None = None,
    dtype: str = "auto",
    max_length: int | None = None,
) -> tuple[GRPOTrainer, Any]:
    """The configured trainer and the processor (``trainer_class`` lets tests compare with stock trl).

    ``trainer_args`` (GRPOConfig fields by their own names) override the short keyword arguments;
    ``reward_weights`` (reward name -> weight) replaces ``rewards`` and the registered default weights; ``lora`` as
    for SFT (with LoRA and beta > 0, trl uses the adapter-free base as the reference); ``dtype`` as for
    ``load_model`` (auto: the checkpoint's own). The policy and the beta > 0 reference both come from our loader.
    ``max_length``: prompts longer than this many tokens (audio included) are skipped and counted."""
    import torch

    from audiomcq.models import load_model

    loaded = load_model(model_dir, dtype=dtype)
    tokenizer = loaded.processor.tokenizer
    placeholders = [tokenizer.convert_tokens_to_ids(t) for t in ("<|AUDIO|>", "<|IMAGE|>", "<|VIDEO|>")]
    names = list(reward_weights or rewards)
    specs = [get_reward(name) for name in names]
    weights = [reward_weights[n] for n in names] if reward_weights else [s.weight for s in specs]
    apply_freeze(loaded.model, **(freeze or {}))
    beta = (trainer_args or {}).get("beta", beta)
    config = make_config(
        GRPOConfig,
        trainer_args,
        output_dir=str(out_dir),
        max_steps=steps,
        learning_rate=lr,
        per_device_train_batch_size=prompts_per_step * num_generations,
        num_generations=num_generations,
        temperature=temperature,
        top_k=top_k,
        beta=beta,
        max_completion_length=max_completion_length,
        reward_weights=weights,
        # Sampled placeholder tokens would ask the model to attend to audio that is not there.
        generation_kwargs={"suppress_tokens": [t for t in placeholders if t is not None and t >= 0]},
        logging_steps=logging_steps,
        save_strategy="steps" if save_steps or (trainer_args or {}).get("save_steps") else "no",
        save_steps=save_steps or steps,
        save_only_model=False,  # full state (optimizer, scheduler, RNG, data position): exact resume
        report_to="none",
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=checkpointing(trainer_args),  # off unless the recipe asks (the released do)
        disable_tqdm=True,
    )
    if config.use_vllm:
        from audiomcq.train.vllm_rollout import enable_audio_rollouts, prepare_policy

        prepare_policy(loaded.model, model_dir, out_dir)
    prompts = within_length(loaded.processor, list(read_records(data)), audio_root, max_length, out_dir, "GRPO")
    cls = trainer_class or AudioGRPOTrainer
    extra: dict[str, Any] = {}
    if issubclass(cls, AudioGRPOTrainer):
        extra["reference"] = lambda ref_dtype: load_model(model_dir, dtype=ref_dtype or dtype).model
    trainer = cls(
        model=loaded.model,
        reward_funcs=[s.fn for s in specs],
        args=config,
        train_dataset=grpo_dataset(prompts, data, audio_root),
        processing_class=loaded.processor,
        peft_config=lora_config(lora),
        **extra,
    )
    trainer.remove_callback(PrinterCallback)  # logs go to the trainer state and our logger, not print()
    if config.use_vllm:
        enable_audio_rollouts(trainer)
    return trainer, loaded.processor
