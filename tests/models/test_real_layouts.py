"""Every stage through the CLI on checkpoints laid out exactly like the hub's Qwen2.5-Omni-7B (the full thinker +
talker + token2wav model) and Qwen2-Audio-7B-Instruct: real configs with the sizes shrunk, the real tokenizers,
chat templates and processor configs, random bf16 weights (``real_checkpoints.py``)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import kill_at_first_checkpoint
from fakes.real_checkpoints import OMNI, QWEN2_AUDIO, SHARED_CHECKPOINTS, build

from audiomcq.cli import main
from audiomcq.jsonio import load_json

NAMES = {"omni": OMNI, "qwen2_audio": QWEN2_AUDIO}
PARADIGMS = ["weak_to_strong", "mixed_to_strong", "mixed_to_mixed", "all_sft", "all_grpo"]
# The released recipes, cut to seconds: their trainer_args stay (beta 0.001, top_k 4, ...) except size and GPU-only.
_BOTH = ("bf16=false", "deepspeed=null", "max_steps=1", "per_device_train_batch_size=2", "save_steps=1")
SHORT = [
    "allocation.sft_fraction=0.5",
    "allocation.augment=1",
    "eval.max_new_tokens=4",
    "grpo.trainer_args.num_generations=2",
    "grpo.trainer_args.max_completion_length=4",
    "grpo.trainer_args.dataloader_num_workers=0",
    *[f"{stage}.trainer_args.{k}" for stage in ("sft", "grpo") for k in _BOTH],
]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="session", params=list(NAMES))
def real(request, tmp_path_factory) -> Path:
    """A random-weight checkpoint in the hub's exact layout, built once per session and family."""
    return build(NAMES[request.param], tmp_path_factory.mktemp(request.param) / NAMES[request.param])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A few synthetic questions, plus an ACF-labelled pool (alternating weak/strong) for paradigm runs."""
    from audiomcq.synth import generate

    out = tmp_path_factory.mktemp("real-corpus")
    generate(out, 8, seed=5, eval_n=4)
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    with (out / "labelled.jsonl").open("w") as fh:
        for i, row in enumerate(rows):
            fh.write(json.dumps({**row, "audio-contribution": "weak" if i % 2 else "strong"}) + "\n")
    return out


def _cli(*args: str) -> None:
    assert main([str(a) for a in args]) == 0


def _train(method: str, real: Path, corpus: Path, out: Path, *sets: str, recipe: str = "smoke") -> list[str]:
    return [
        "train",
        method,
        "--model",
        str(real),
        "--data",
        str(corpus / "train.jsonl"),
        "--audio-root",
        str(corpus),
        "--out",
        str(out),
        "--recipe",
        recipe,
        *[f"--set={s}" for s in sets],
    ]


def _tensors(folder: Path) -> dict[str, np.ndarray]:
    from audiomcq.models import load_model

    model = load_model(folder, dtype="float32").model
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def _weight_names(folder: Path) -> list[str]:
    from safetensors import safe_open

    names = []
    for shard in folder.glob("*.safetensors"):
        with safe_open(str(shard), "pt") as f:
            names += list(f.keys())
    return names


def _weight_dtypes(folder: Path) -> set[str]:
    from safetensors import safe_open

    dtypes = set()
    for shard in folder.glob("*.safetensors"):
        with safe_open(str(shard), "pt") as f:
            dtypes |= {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    return dtypes


@pytest.fixture(scope="module")
def sft_final(real, corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sft")
    _cli(*_train("sft", real, corpus, out, "sft.steps=2", "sft.save_steps=null", "sft.batch_size=2"))
    return out / "final"


def test_the_layout_is_the_hubs(real):
    from fakes.real_checkpoints import hub_key_patterns

    config = json.loads((real / "config.json").read_text())
    source = SHARED_CHECKPOINTS / real.name
    assert config["model_type"] == json.loads((source / "config.json").read_text())["model_type"]
    names = _weight_names(real)
    if real.name == OMNI:
        assert config["architectures"] == ["Qwen2_5OmniModel"]
        index = json.loads((real / "model.safetensors.index.json").read_text())["weight_map"]
        assert set(index) == set(names) and len(set(index.values())) > 1, "sharded, with an index"
    hub = json.loads((source / "model.safetensors.index.json").read_text())["weight_map"]
    assert hub_key_patterns(names) <= hub_key_patterns(hub)
    assert {p for p in hub_key_patterns(hub) - hub_key_patterns(names) if "inv_freq" not in p} == set()
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "preprocessor_config.json"):
        assert (real / name).read_bytes() == (source / name).read_bytes()


def test_one_loader_picks_the_class_and_the_checkpoints_dtype(real, monkeypatch, caplog):
    import torch

    from audiomcq.models import loading

    loaded = loading.load_model(real)
    assert type(loaded.model).__name__ in (
        "Qwen2_5OmniThinkerForConditionalGeneration",
        "Qwen2AudioForConditionalGeneration",
    )
    assert loaded.model.dtype == torch.bfloat16  # the hub config's torch_dtype (Qwen2-Audio: text_config's)
    assert loading.load_model(real, dtype="float32").model.dtype == torch.float32
    monkeypatch.setattr(loading, "cpu_supports_bf16", lambda: False)
    loading._warn_bf16_fallback.cache_clear()
    with caplog.at_level("WARNING"):
        assert loading.resolve_dtype(real) == torch.float32
    assert "no native bf16" in caplog.text


def test_tiny_models_render_prompts_exactly_as_the_real_checkpoints(real, tiny_omni, tiny_qwen2_audio):
    from transformers import AutoProcessor

    from audiomcq.models import load_model
    from audiomcq.models.batch import prompt_text
    from audiomcq.models.tiny import build_processor, build_tokenizer

    tiny = tiny_omni if real.name == OMNI else tiny_qwen2_audio
    real_processor = load_model(real).processor
    tiny_processor = AutoProcessor.from_pretrained(tiny) if real.name == QWEN2_AUDIO else load_model(tiny).processor
    assert tiny_processor.chat_template == real_processor.chat_template
    # the tokenizer's own template as published (saving a processor writes its template beside, for both)
    published = json.loads((SHARED_CHECKPOINTS / real.name / "tokenizer_config.json").read_text())["chat_template"]
    family = "qwen2_5_omni" if real.name == OMNI else "qwen2_audio"
    assert build_processor(family, build_tokenizer(["a b"], 300, family)).tokenizer.chat_template == published
    assert real_processor.tokenizer.chat_template == published
    question, choices = "What is heard?", ["a dog", "rain"]
    text = prompt_text(real_processor, question, choices)
    assert prompt_text(tiny_processor, question, choices) == text
    assert text.count("<|AUDIO|>") == 1 and "You are a helpful assistant." not in text


def test_sft_trains_in_the_checkpoints_dtype_and_eval_filter_and_export_load_it(real, sft_final, corpus, tmp_path):
    assert _weight_dtypes(sft_final) == {"BF16"}
    before, after = _tensors(real), _tensors(sft_final)
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    # eval: both modes score every item
    _cli(
        "eval",
        "--model",
        sft_final,
        "--data",
        corpus / "eval.jsonl",
        "--audio-root",
        corpus,
        "--out",
        tmp_path / "eval",
        "--max-new-tokens",
        "4",
    )
    metrics = load_json(tmp_path / "eval" / "metrics.json")
    assert set(metrics["tasks"]["synthetic"]["modes"]) == {"audio", "silence"}
    # filter: every record labelled, by the hub checkpoint and the trained one
    _cli(
        "filter",
        "run",
        "--data",
        corpus / "eval.jsonl",
        "--audio-root",
        corpus,
        "--models",
        real,
        sft_final,
        "--probes",
        "silence:clip",
        "--min-correct",
        "1",
        "--max-new-tokens",
        "4",
        "--out",
        tmp_path / "acf",
    )
    labels = [json.loads(line) for line in (tmp_path / "acf" / "labelled.jsonl").read_text().splitlines()]
    assert len(labels) == 4 and {r["audio-contribution"] for r in labels} <= {"weak", "strong"}
    # export-vllm: the trained Omni thinker becomes the full layout; others are copied as they are
    _cli("export-vllm", "--model", sft_final, "--out", tmp_path / "vllm")
    exported = json.loads((tmp_path / "vllm" / "config.json").read_text())
    if real.name == OMNI:
        assert exported["architectures"] == ["Qwen2_5OmniForConditionalGeneration"]
        assert all(k.startswith("thinker.") for k in _weight_names(tmp_path / "vllm"))
    else:
        assert exported["model_type"] == "qwen2_audio"


@pytest.mark.parametrize(
    ("beta", "grpo"),
    [("0", {}), ("0.001", {"freeze": {"audio": True}}), ("0.001", {"lora": {"r": 4, "lora_alpha": 8}})],
    ids=["beta0", "released-beta-frozen-audio", "released-beta-lora"],
)
def test_grpo_runs_at_every_beta_with_freeze_and_lora(real, corpus, tmp_path, beta, grpo):
    untouched = _digest(real)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"extends": "smoke", "grpo": {**grpo, "beta": float(beta), "save_steps": 1}}))
    run = tmp_path / "run"
    _cli(*_train("grpo", real, corpus, run, "grpo.steps=1", recipe=str(recipe)))
    final = run / "final"
    assert _weight_dtypes(final) == {"BF16"}
    config = json.loads((final / "config.json").read_text())
    assert "image_token_id" not in config, "the model's config must not be patched"
    assert not any("lora" in k for k in _tensors(final)), "LoRA must be merged into an ordinary model"
    state = load_json(run / "checkpoint-1" / "trainer_state.json")
    if beta != "0":  # the reference model took part: its KL term is logged, finite
        assert all(np.isfinite(e["kl"]) for e in state["log_history"] if "kl" in e)
        assert any("kl" in e for e in state["log_history"])
    assert _digest(real) == untouched


def test_freeze_and_dtype_apply_to_the_model_trl_trains_at_beta_above_zero(real, corpus, tmp_path):
    import torch

    from audiomcq.train.grpo import build_grpo_trainer

    trainer, _ = build_grpo_trainer(
        real,
        corpus / "train.jsonl",
        corpus,
        tmp_path,
        steps=1,
        beta=0.001,
        prompts_per_step=1,
        num_generations=2,
        freeze={"audio": True},
        dtype="float32",
    )
    frozen = [n for n, p in trainer.model.named_parameters() if not p.requires_grad]
    assert frozen and all("audio_tower" in n for n in frozen)
    assert trainer.model.dtype == torch.float32 and trainer.ref_model is not None
    assert trainer.ref_model is not trainer.model and trainer.ref_model.dtype == torch.float32
    assert type(trainer.ref_model) is type(trainer.model)


@pytest.mark.slow
@pytest.mark.parametrize("paradigm", PARADIGMS)
def test_train_run_every_paradigm_with_the_released_recipe(real, corpus, tmp_path, paradigm):
    _cli(
        "train",
        "run",
        "--recipe",
        paradigm,
        "--model",
        real,
        "--data",
        corpus / "labelled.jsonl",
        "--audio-root",
        corpus,
        "--out",
        tmp_path,
        "--selection",
        corpus / "eval.jsonl",
        *[f"--set={s}" for s in SHORT],
    )
    summary = load_json(tmp_path / "summary.json")
    assert ("sft" in summary) == (paradigm != "all_grpo")
    assert ("grpo" in summary) == (paradigm != "all_sft")
    if "grpo" in summary:  # sft@best, as released: chosen on the selection set, or the base without an SFT stage
        assert summary["grpo_init"]["stage"] == ("base" if paradigm == "all_grpo" else "sft")
    for stage in ("sft", "grpo"):
        if stage in summary:
            assert (tmp_path / stage / "final" / "config.json").is_file()


def test_serve_answers_v1_v2_openai_and_query(real, corpus, tmp_path):
    import base64

    import openai
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    from audiomcq.bench.serve import running_server

    record = json.loads((corpus / "eval.jsonl").read_text().splitlines()[0])
    wav = (corpus / record["audio_path"]).read_bytes()
    with running_server(real, [], tmp_path / "serve.log") as base:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "audiomcq.cli",
                "query",
                "--url",
                base,
                "--audio",
                str(corpus / record["audio_path"]),
                "--question",
                record["question"],
                "--choices",
                *record["choices"],
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        answer = done.stdout.strip().removeprefix("answer: ")
        assert answer in record["choices"]

        def tensor(name: str, value: str) -> InferInput:
            t = InferInput(name, [1], "BYTES")
            t.set_data_from_numpy(np.array([value.encode()], dtype=np.object_))
            return t

        async def v2():
            client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=120))
            try:
                request = InferRequest(
                    "audiomcq",
                    [
                        tensor("question", record["question"]),
                        tensor("choices", json.dumps(record["choices"])),
                        tensor("audio", base64.b64encode(wav).decode()),
                    ],
                )
                return await client.infer(base, request, model_name="audiomcq")
            finally:
                await client.close()

        import asyncio

        out = {o.name: o.as_numpy() for o in asyncio.run(v2()).outputs}
        assert str(out["answer"][0]) == answer
        client = openai.OpenAI(base_url=f"{base}/openai/v1", api_key="unused", max_retries=0)
        from audiomcq.prompts import user_prompt

        reply = client.chat.completions.create(
            model="audiomcq",
            temperature=0,
            max_tokens=32,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "input_audio",
                            "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"},
                        },
                        {"type": "text", "text": user_prompt(record["question"], record["choices"])},
                    ],
                }
            ],
        )
        assert reply.choices[0].message.content == str(out["raw"][0])


@pytest.mark.slow
def test_killed_sft_on_the_hub_layout_resumes_bit_identical(real, corpus, tmp_path):
    if real.name != OMNI:
        pytest.skip("one family is enough for the kill/resume mechanics; Omni is the full-model layout")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    sets = ["sft.steps=4", "sft.save_steps=1", "sft.batch_size=2"]
    cmd = [sys.executable, "-m", "audiomcq.cli"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([*cmd, *_train("sft", real, corpus, whole, *sets)], check=True, env=env, capture_output=True)
    kill_at_first_checkpoint([*cmd, *_train("sft", real, corpus, killed, *sets)], killed, env)
    done = subprocess.run(
        [*cmd, *_train("sft", real, corpus, killed, *sets)], env=env, capture_output=True, text=True, check=True
    )
    assert f"resumed from {killed}" in done.stdout
    assert _digest(killed / "final")["model.safetensors"] == _digest(whole / "final")["model.safetensors"]
