"""The audio must reach the training forward passes: trl alone trains audio-blind.

Each test counts, with a forward pre-hook on the model, the loss forwards that carry ``input_features``.
The GRPO test also runs stock trl on the same data to show the check can fail.
"""

from __future__ import annotations

import pytest

pytest.importorskip("trl")


def _count_audio_forwards(model):
    seen = {"with_audio": 0, "without_audio": 0}

    def hook(module, args, kwargs):
        # Loss forwards carry labels (SFT, and trl's log-prob forwards); generation's cached decode steps do not
        # need the audio again, since the prefill already put it in the cache.
        if kwargs.get("labels") is not None:
            seen["with_audio" if kwargs.get("input_features") is not None else "without_audio"] += 1

    return seen, model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.slow
def test_sft_forwards_carry_audio(tiny_omni, synth_corpus, tmp_path):
    from audiomcq.train.sft import build_sft_trainer

    trainer, _ = build_sft_trainer(
        tiny_omni, synth_corpus / "train.jsonl", synth_corpus, tmp_path, steps=2, lr=1e-3, batch_size=4
    )
    seen, handle = _count_audio_forwards(trainer.model)
    trainer.train()
    handle.remove()
    assert seen == {"with_audio": 2, "without_audio": 0}
    batch = next(iter(trainer.get_train_dataloader()))
    labels = batch["labels"][0]
    target = trainer.processing_class.tokenizer.decode(labels[labels != -100])
    assert target.startswith("<answer>") and target.endswith("</answer><|im_end|>\n")


@pytest.mark.slow
def test_grpo_policy_forwards_carry_audio_and_stock_trl_does_not(tiny_omni, synth_corpus, tmp_path):
    from trl import GRPOTrainer

    from audiomcq.prompts import clean_messages
    from audiomcq.train.grpo import AudioGRPOTrainer, build_grpo_trainer

    class StockGRPO(GRPOTrainer):
        """Stock trl, given prompts without the None-filled keys (which the real template would render as audio)."""

        def _generate_and_score_completions(self, inputs):
            return super()._generate_and_score_completions(
                [{**x, "prompt": clean_messages(x["prompt"])} for x in inputs]
            )

    def run(trainer_class):
        trainer, _ = build_grpo_trainer(
            tiny_omni,
            synth_corpus / "train.jsonl",
            synth_corpus,
            tmp_path / trainer_class.__name__,
            steps=2,
            lr=1e-4,
            prompts_per_step=2,
            num_generations=2,
            max_completion_length=8,
            trainer_class=trainer_class,
        )
        seen, handle = _count_audio_forwards(trainer.model)
        trainer.train()
        handle.remove()
        return seen

    ours = run(AudioGRPOTrainer)
    assert ours == {"with_audio": 2, "without_audio": 0}
    stock = run(StockGRPO)
    assert stock == {"with_audio": 0, "without_audio": 2}


@pytest.mark.slow
def test_grpo_reference_and_old_policy_forwards_carry_audio(tiny_omni, synth_corpus, tmp_path):
    from audiomcq.train.grpo import build_grpo_trainer

    # beta > 0 adds reference log-probs; num_iterations > 1 adds old-policy log-probs computed before the updates.
    trainer, _ = build_grpo_trainer(
        tiny_omni,
        synth_corpus / "train.jsonl",
        synth_corpus,
        tmp_path,
        steps=2,
        lr=1e-4,
        prompts_per_step=2,
        num_generations=2,
        max_completion_length=8,
        beta=0.05,
        trainer_args={"num_iterations": 2},
    )
    assert trainer.ref_model is not None
    policy, h1 = _count_audio_forwards(trainer.model)
    ref, h2 = _count_audio_forwards(trainer.ref_model)
    trainer.train()
    h1.remove()
    h2.remove()
    assert policy["without_audio"] == 0 and ref["without_audio"] == 0
    assert ref["with_audio"] >= 1 and policy["with_audio"] > 2  # loss forwards plus the old-policy pass


@pytest.mark.slow
@pytest.mark.parametrize("family", ["tiny_omni", "tiny_qwen2_audio"])
def test_lora_sft_trains_adapters_on_both_layouts_with_audio_and_saves_a_merged_model(
    family, request, synth_corpus, tmp_path
):
    from audiomcq.models import load_model
    from audiomcq.train.common import train_and_save
    from audiomcq.train.sft import build_sft_trainer

    path = request.getfixturevalue(family)
    trainer, processor = build_sft_trainer(
        path,
        synth_corpus / "train.jsonl",
        synth_corpus,
        tmp_path,
        steps=2,
        lr=1e-3,
        batch_size=4,
        lora={"r": 4, "lora_alpha": 8},
    )
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("language_model" in n for n in trainable)  # the target pattern matched this family's layout
    seen, handle = _count_audio_forwards(trainer.model.get_base_model())
    train_and_save(trainer, processor, tmp_path, None)
    handle.remove()
    assert seen == {"with_audio": 2, "without_audio": 0}
    merged = load_model(tmp_path / "final").model
    assert not any("lora_" in n for n, _ in merged.named_parameters())
