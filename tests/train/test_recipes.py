"""The paradigm recipes reproduce the released training scripts' flags; variants, bases and freezing work."""

import pytest

from audiomcq.config import load_recipe
from audiomcq.errors import AudioMCQError
from audiomcq.prompts import SYSTEM_PROMPT

PARADIGMS = ["weak_to_strong", "mixed_to_strong", "mixed_to_mixed", "all_sft", "all_grpo"]
# training_scripts/sft.sh and grpo.sh (commit 5c24ffc), flag by flag, in trl/transformers field names.
SFT_SH = {
    "num_train_epochs": 2,
    "per_device_train_batch_size": 20,
    "per_device_eval_batch_size": 20,
    "learning_rate": 1e-6,
    "gradient_accumulation_steps": 1,
    "warmup_steps": 0.05,
    "lr_scheduler_type": "cosine",
    "save_only_model": True,
    "eval_steps": 250,
    "save_steps": 250,
    "logging_steps": 1,
    "max_length": 1024,
    "bf16": True,
    "deepspeed": "zero2",
}
GRPO_SH = {
    "learning_rate": 1e-6,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.01,
    "beta": 0.001,
    "num_generations": 8,
    "num_iterations": 1,
    "temperature": 1.5,
    "top_k": 4,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 8,
    "max_completion_length": 128,
    "max_steps": 2000,
    "gradient_accumulation_steps": 1,
    "eval_steps": 100,
    "save_steps": 100,
    "save_strategy": "steps",
    "save_total_limit": None,
    "logging_steps": 1,
    "dataloader_num_workers": 16,
    "log_completions": False,
    "bf16": True,
    "deepspeed": "zero2",
}
# What the scripts inherited from ms-swift 3.x without setting it, and the paper's GRPO loss (per-sequence mean).
INHERITED = {
    "gradient_checkpointing": True,
    "weight_decay": 0.1,
    "adam_beta1": 0.9,
    "adam_beta2": 0.95,
    "adam_epsilon": 1e-8,
    "max_grad_norm": 1.0,
}
INHERITED_GRPO = {
    "loss_type": "grpo",
    "top_p": 0.9,
    "repetition_penalty": 1.0,
    "epsilon": 0.2,
    "epsilon_high": None,
    "scale_rewards": "group",
    "multi_objective_aggregation": "sum_then_normalize",
    "importance_sampling_level": "token",
    "mask_truncated_completions": False,
    "top_entropy_quantile": 1.0,
    "sync_ref_model": False,
}
# The steps the paper reports: SFT evaluated up to step 1250 (GRPO from the best), All-Data SFT 2000 steps and
# All-Data GRPO 1200; the scripts' own 2 epochs / 2000 steps otherwise.
STEPS = {"all_sft": ({"max_steps": 2000}, {}), "all_grpo": ({"max_steps": 1250}, {"max_steps": 1200})}


@pytest.mark.parametrize("name", PARADIGMS)
def test_paradigm_recipes_carry_the_released_flags_exactly(name):
    r = load_recipe(name)
    assert r["allocation"]["paradigm"] == name and r["allocation"]["sft_size"] == 313177
    assert r["allocation"]["augment"] == 4 and r["model"]["system"] == SYSTEM_PROMPT
    sft_steps, grpo_steps = STEPS.get(name, ({"max_steps": 1250}, {}))
    assert r["sft"]["trainer_args"] == SFT_SH | INHERITED | sft_steps
    assert r["grpo"]["trainer_args"] == GRPO_SH | INHERITED | INHERITED_GRPO | grpo_steps
    assert r["grpo"]["init"] == "sft@best" and r["grpo"]["max_length"] == 2048
    assert r["grpo"]["reward_weights"] == {"external_audio_choice_accuracy": 2.0, "external_format": 0.5}
    no_freeze = {"llm": False, "audio": False, "aligner": False}  # encoders and projector are trained too
    assert r["sft"]["freeze"] == no_freeze and r["grpo"]["freeze"] == no_freeze


def test_the_paper_variant_and_overrides_take_precedence_in_order():
    r = load_recipe("weak_to_strong", ["grpo.trainer_args.max_steps=1500"], variant="paper")
    g = r["grpo"]["trainer_args"]
    assert (g["warmup_steps"], g["max_completion_length"], g["max_steps"]) == (0.05, 1024, 1500)
    # the steps the paper chose: GRPO from SFT step 750 (1000 for the mixed SFT sets), then 100/900/400 steps
    chosen = {"weak_to_strong": (750, 100), "mixed_to_strong": (1000, 900), "mixed_to_mixed": (1000, 400)}
    for name, (sft_step, grpo_steps) in chosen.items():
        p = load_recipe(name, variant="paper")
        assert p["grpo"]["init"] == f"sft@{sft_step}" and p["sft"]["trainer_args"]["max_steps"] == sft_step
        assert p["grpo"]["trainer_args"]["max_steps"] == grpo_steps
    with pytest.raises(AudioMCQError, match="no variant 'nope'"):
        load_recipe("weak_to_strong", variant="nope")
    with pytest.raises(AudioMCQError, match="unknown recipe key"):
        load_recipe("weak_to_strong", ["grpo.temprature=1.0"])


def test_recipe_trainer_args_build_real_trainer_configs(tmp_path):
    from trl import GRPOConfig, SFTConfig

    from audiomcq.train.common import make_config

    cpu = [f"{s}.trainer_args.{k}={v}" for s in ("sft", "grpo") for k, v in (("bf16", "false"), ("deepspeed", "null"))]
    r = load_recipe("mixed_to_strong", cpu)
    sft = make_config(SFTConfig, r["sft"]["trainer_args"], output_dir=str(tmp_path), use_cpu=True)
    grpo = make_config(GRPOConfig, r["grpo"]["trainer_args"], output_dir=str(tmp_path), use_cpu=True)
    assert sft.num_train_epochs == 2 and grpo.top_k == 4 and grpo.num_generations == 8
    with pytest.raises(AudioMCQError, match="need a CUDA GPU"):
        make_config(SFTConfig, {"bf16": True}, output_dir=str(tmp_path))
    with pytest.raises(AudioMCQError, match="unknown SFTConfig setting"):
        make_config(SFTConfig, {"lerning_rate": 1.0}, output_dir=str(tmp_path))


@pytest.mark.parametrize("name", [*PARADIGMS, "released", "demo", "smoke"])
def test_every_recipe_states_the_sft_kernel_switches_at_their_defaults(name):
    """Packing off, sdpa, trl's fused LM head: runs without the switches train exactly as before them."""
    from audiomcq.train.kernels import DEFAULTS, resolve

    kernels = load_recipe(name)["sft"]["kernels"]
    assert kernels == DEFAULTS == resolve(None) == {"packing": False, "attention": "sdpa", "loss": "fused"}
    assert load_recipe(name, ["sft.kernels.packing=true"])["sft"]["kernels"]["packing"] is True
    with pytest.raises(AudioMCQError, match="unknown recipe key"):
        load_recipe(name, ["sft.kernels.pack=true"])


@pytest.mark.parametrize("family", ["tiny_omni", "tiny_qwen2_audio"])
def test_freeze_flags_match_both_parameter_layouts(family, request):
    from audiomcq.models import load_model
    from audiomcq.train.common import PARTS, apply_freeze

    model = load_model(request.getfixturevalue(family)).model
    frozen = apply_freeze(model, audio=True)
    names = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen["audio"] > 0 and frozen["llm"] == 0 and frozen["aligner"] == 0
    assert all("audio_tower" in n for n in names)
    assert not any(n.startswith(PARTS["aligner"]) for n in names)  # the projector stays trainable
    both = apply_freeze(model, llm=True, aligner=True)
    assert both["llm"] > 0 and both["aligner"] > 0  # the prefixes match this family's real parameter names


def test_a_paradigm_recipe_trains_on_cpu_with_its_flags(tiny_omni, synth_corpus, tmp_path):
    from audiomcq.cli import main

    cpu = ["bf16=false", "deepspeed=null", "save_steps=1", "logging_steps=1"]
    data = ["--data", str(synth_corpus / "train.jsonl"), "--audio-root", str(synth_corpus)]
    common = ["--model", str(tiny_omni), *data, "--recipe", "weak_to_strong", "--variant", "paper"]
    sft = [f"--set=sft.trainer_args.{s}" for s in [*cpu, "max_steps=2", "per_device_train_batch_size=4"]]
    assert main(["train", "sft", *common, "--out", str(tmp_path / "sft"), *sft]) == 0
    small = ["max_steps=2", "per_device_train_batch_size=4", "num_generations=2", "max_completion_length=4"]
    grpo = [f"--set=grpo.trainer_args.{s}" for s in [*cpu, *small, "dataloader_num_workers=0"]]
    assert main(["train", "grpo", *common, "--out", str(tmp_path / "grpo"), *grpo]) == 0
    for stage in ("sft", "grpo"):
        assert (tmp_path / stage / "final" / "config.json").is_file()
        assert (tmp_path / stage / "checkpoint-2" / "COMPLETE").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("paradigm", PARADIGMS)
def test_every_paradigm_runs_end_to_end_on_the_smoke_recipe(paradigm, tiny_omni, synth_corpus, tmp_path):
    from audiomcq.data.io import read_records, write_records
    from audiomcq.stages.demo import post_train_stage, run_models

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "loop").symlink_to(synth_corpus)
    records = read_records(synth_corpus / "train.jsonl")
    for r in records:  # label by the synthetic ground truth, as a perfect filter would
        r.audio_contribution = "weak" if r.extra["text_answerable"] else "strong"
    write_records(tmp_path / "labels" / "train" / "labelled.jsonl", records)
    summary = post_train_stage(
        str(tiny_omni), str(tmp_path / "corpus"), str(tmp_path / "labels"), paradigm, str(tmp_path / "run"), "smoke"
    )
    stages = set(run_models(str(tmp_path / "run")))
    assert stages == {"all_sft": {"sft"}, "all_grpo": {"grpo"}}.get(paradigm, {"sft", "grpo"})
    assert summary["paradigm"] == paradigm and (tmp_path / "run" / "summary.json").is_file()


def test_train_run_does_a_whole_paradigm_from_its_recipe(tiny_omni, synth_corpus, tmp_path):
    from audiomcq.cli import main
    from audiomcq.data.io import read_records, write_records
    from audiomcq.jsonio import load_json

    records = read_records(synth_corpus / "train.jsonl")
    for r in records:
        r.audio_contribution = "weak" if r.extra["text_answerable"] else "strong"
    write_records(tmp_path / "labelled.jsonl", records)
    cpu = [
        f"--set={s}.trainer_args.{k}"
        for s in ("sft", "grpo")
        for k in ("bf16=false", "deepspeed=null", "max_steps=1", "per_device_train_batch_size=4", "save_steps=1")
    ]
    small = [
        "--set=grpo.trainer_args.num_generations=2",
        "--set=grpo.trainer_args.max_completion_length=4",
        "--set=grpo.trainer_args.dataloader_num_workers=0",
        "--set=allocation.sft_fraction=0.25",
        "--set=grpo.init=sft@final",
    ]
    data = ["--data", str(tmp_path / "labelled.jsonl"), "--audio-root", str(synth_corpus)]
    args = [
        "train",
        "run",
        "--recipe",
        "mixed_to_strong",
        "--model",
        str(tiny_omni),
        *data,
        "--out",
        str(tmp_path / "run"),
    ]
    assert main([*args, *cpu, *small]) == 0
    summary = load_json(tmp_path / "run" / "summary.json")
    assert summary["paradigm"] == "mixed_to_strong" and summary["allocation"]["sft"]["count"] == 16  # 0.25 x 64
    assert len(read_records(tmp_path / "run" / "data" / "sft.jsonl")) == 16 * 4  # option-shuffle x4
    assert (tmp_path / "run" / "grpo" / "final" / "config.json").is_file()
    assert load_json(tmp_path / "run" / "recipe.resolved.json")["grpo"]["trainer_args"]["top_k"] == 4
