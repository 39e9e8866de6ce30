"""The loop's stages as path-in/path-out functions: what the CLI and the KFP components call, one call each.

Layout of the artifacts (each a directory):
- corpus:   ``pretrain/`` (pool for base and filter models) and ``loop/`` (``train.jsonl``, ``eval.jsonl``, audio)
- model:    an HF model directory (model + processor)
- labels:   ``train/`` and ``eval/`` ACF outputs (``labelled.jsonl``, ``weak.jsonl``, ``strong.jsonl``, ``stats.json``)
- run:      one paradigm: ``data/`` (allocation), ``sft/`` and ``grpo/`` (checkpoints, ``final/``), ``summary.json``
- metrics:  one ``audiomcq eval`` output per model (``<name>/``) and ``metrics.json`` mapping each name to its summary
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from audiomcq.config import load_recipe
from audiomcq.jsonio import load_json, write_json
from audiomcq.storage import publish_under, run_prefix
from audiomcq.timing import timed

log = logging.getLogger(__name__)
ONE_CHUNK = 1_000_000  # evaluation chunk size larger than any held-out split


def _recipe(
    recipe: str, overrides: list[str] | tuple[str, ...], out: Path, variant: str | None = None
) -> dict[str, Any]:
    """The resolved recipe, also written next to the stage's outputs (by rank 0 of a multi-process run)."""
    from audiomcq.train.launch import is_main

    resolved = load_recipe(recipe, list(overrides), variant)
    if is_main():
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "recipe.resolved.json", resolved)
    return resolved


@timed
def synth_stage(
    out_dir: str,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    publish: str = "",
    run_id: str = "",
) -> dict[str, Any]:
    """Generate the pre-training pool and the loop's pool with its held-out split; also run dataset generation with
    the template backend over the loop pool's captions (``sdg/``: samples, rejects, summary), so the embedded default
    exercises that stage too (its samples are reported, not trained on: the demo's numbers stay comparable)."""
    from audiomcq.sdg.run import generate_dataset
    from audiomcq.synth import generate

    out = Path(out_dir)
    cfg = _recipe(recipe, overrides, out)["synth"]
    share = cfg["text_share"]
    pre = generate(out / "pretrain", cfg["pretrain_n"], seed=cfg["seed"] + 1000, eval_n=0, text_share=share)
    loop = generate(out / "loop", cfg["n"], seed=cfg["seed"], eval_n=cfg["eval_n"], text_share=share)
    sdg = generate_dataset({"synthetic": out / "loop" / "train.jsonl"}, out / "sdg")
    return {
        "pretrain": pre,
        "loop": loop,
        "sdg": {"samples": sdg["samples"], "rejects": sdg["rejects"]},
        "uri": publish_under(out, run_prefix(publish, run_id), "corpus"),
    }


@timed
def pretrain_stage(
    corpus_dir: str,
    out_dir: str,
    role: str,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    publish: str = "",
    run_id: str = "",
) -> dict[str, Any]:
    """Build a tiny model (``role``: ``base`` or a filter index) and pre-train it on the corpus's pre-training pool."""
    from audiomcq.models.tiny import TinySpec, build_tiny, save_tiny, tokenizer_texts
    from audiomcq.train.sft import train_sft

    out, corpus = Path(out_dir), Path(corpus_dir)
    cfg = _recipe(recipe, overrides, out / "work")
    spec = cfg["base"] if role == "base" else cfg["filters"][int(role)]
    texts = tokenizer_texts(
        [corpus / "pretrain" / "train.jsonl", corpus / "loop" / "train.jsonl", corpus / "loop" / "eval.jsonl"]
    )
    size = TinySpec(hidden=spec["hidden"], layers=spec.get("layers", 2), audio_d=spec["audio_d"])
    model, processor = build_tiny("qwen2_5_omni", texts, size, seed=spec["seed"])
    init = save_tiny(model, processor, out / "work" / "init")
    result = train_sft(
        init,
        corpus / "pretrain" / "train.jsonl",
        corpus / "pretrain",
        out / "work" / "sft",
        final_dir=out,
        steps=spec["steps"],
        lr=spec["lr"],
        batch_size=spec.get("batch_size", 16),
        seed=spec["seed"],
    )
    shutil.rmtree(out / "work" / "init")
    write_json(out / "work" / "pretrain.json", {"role": role, **result})
    return {**result, "uri": publish_under(out, run_prefix(publish, run_id), "models", role, exclude=("work",))}


@timed
def filter_stage(
    corpus_dir: str,
    filter_dirs: list[str],
    out_dir: str,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    publish: str = "",
    run_id: str = "",
) -> dict[str, Any]:
    """Label the loop's training pool and its held-out split weak/strong with the filter models' probes."""
    from audiomcq.acf import FilterConfig, run_filter

    out, corpus = Path(out_dir), Path(corpus_dir)
    config = FilterConfig.from_dict(_recipe(recipe, overrides, out)["filter"])
    stats = {
        split: run_filter(corpus / "loop" / f"{split}.jsonl", filter_dirs, corpus / "loop", out / split, config)
        for split in ("train", "eval")
    }
    return {**stats, "uri": publish_under(out, run_prefix(publish, run_id), "labels")}


@timed
def post_train_stage(
    base_dir: str,
    corpus_dir: str,
    labels_dir: str,
    paradigm: str,
    out_dir: str,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    publish: str = "",
    run_id: str = "",
) -> dict[str, Any]:
    """The demo layout's post-training: the corpus's loop audio and the filter's training labels. With an
    ``s3://`` ``publish`` prefix the run lives in S3 (``<publish>/<run_id>/runs/<paradigm>``: every checkpoint
    uploaded as it completes, so a preempted and retried task resumes from the last one) and is then copied into
    ``out_dir``."""
    from audiomcq import storage
    from audiomcq.stages_scaleout import train_in_pod

    labelled = Path(labels_dir) / "train" / "labelled.jsonl"
    prefix = storage.run_prefix(publish, run_id)
    remote = f"{prefix}/runs/{paradigm}" if prefix else ""
    # in-process on one device, or under torchrun across the pod's GPUs (the recipe's launch.gpus_per_node)
    train_in_pod(
        base_dir,
        str(labelled),
        str(Path(corpus_dir) / "loop"),
        out_dir,
        recipe,
        list(overrides),
        paradigm,
        publish=remote,
    )
    if remote:  # the artifact gets the run without its checkpoints (they stay in S3; evaluation reads the finals)
        storage.fetch_dir(remote, out_dir, skip="checkpoint-*")
    return {**load_json(Path(out_dir) / "summary.json"), "uri": remote}


def post_train(
    model_dir: str | Path,
    labelled: str | Path,
    audio_root: str | Path,
    out_dir: str | Path,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    variant: str | None = None,
    paradigm: str | None = None,
    selection: str | Path | None = None,
    dtype: str = "auto",
) -> dict[str, Any]:
    """One paradigm: allocate the labelled pool, SFT from ``model_dir``, GRPO from the SFT checkpoint the recipe's
    ``grpo.init`` names (``audiomcq.train.grpo_start``; either stage is skipped when the paradigm gives it no
    data). The recipe's ``sft``/``grpo`` sections go to the trainers as they are; ``paradigm`` defaults to the
    recipe's ``allocation.paradigm``. ``selection`` (held-out records) becomes the position-balanced
    checkpoint-selection set ``data/selection.jsonl``, checked for leakage against the training pool. ``dtype`` is
    the models' (auto: each checkpoint's own). Under a launcher every rank computes the same allocation; rank 0
    writes it."""
    from audiomcq.data.allocation import allocate, check_no_leakage, position_balanced, shuffle_options
    from audiomcq.data.io import read_records, write_records
    from audiomcq.errors import AudioMCQError
    from audiomcq.storage import publish
    from audiomcq.train.grpo import train_grpo
    from audiomcq.train.grpo_start import choose_start, parse_init
    from audiomcq.train.launch import barrier, is_main
    from audiomcq.train.remote import resolve_out
    from audiomcq.train.sft import train_sft

    out, remote = resolve_out(out_dir)  # s3://: records stage locally; each trainer mirrors its own checkpoints
    resolved = _recipe(recipe, overrides, out, variant)
    acfg = resolved["allocation"]
    paradigm = paradigm or acfg.get("paradigm")
    if not paradigm:
        raise AudioMCQError(f"recipe {recipe!r} names no allocation.paradigm; pass one")
    pool = read_records(labelled)
    alloc = allocate(pool, paradigm, sft_size=acfg.get("sft_fraction") or acfg["sft_size"], seed=acfg["seed"])
    summary: dict[str, Any] = {"paradigm": paradigm, "allocation": alloc.report}
    balanced = None
    if selection is not None:  # checked on every rank, so a leak stops all of them alike
        held_out = read_records(selection)
        check_no_leakage(pool, held_out)
        balanced = position_balanced(held_out)
        summary["selection"] = {"source": str(selection), "questions": len(held_out), "items": len(balanced)}
    if is_main():
        write_records(out / "data" / "sft.jsonl", shuffle_options(alloc.sft, acfg["augment"], acfg["seed"]))
        write_records(out / "data" / "rl.jsonl", shuffle_options(alloc.rl, acfg["augment"], acfg["seed"]))
        if balanced is not None:
            write_records(out / "data" / "selection.jsonl", balanced)
    barrier()  # the other ranks read what rank 0 wrote
    stage = {name: f"{remote}/{name}" if remote else out / name for name in ("sft", "grpo")}
    grpo = dict(resolved["grpo"])
    init = parse_init(grpo.pop("init", None))
    if init == "sft@best" and alloc.sft and alloc.rl and balanced is None:  # refused before hours of SFT, not after
        raise AudioMCQError(
            "grpo.init sft@best needs a selection set: pass --selection (held-out records), or set "
            "grpo.init to sft@final or sft@STEP"
        )
    if alloc.sft:
        summary["sft"] = train_sft(
            model_dir, out / "data" / "sft.jsonl", audio_root, stage["sft"], dtype=dtype, **resolved["sft"]
        )
    barrier()  # GRPO starts from the SFT model rank 0 saved
    if alloc.rl:
        if is_main():  # rank 0 chooses (sft@best evaluates checkpoints); the other ranks read its choice
            selection_set = out / "data" / "selection.jsonl" if balanced is not None else None
            write_json(
                out / "grpo-init.json",
                choose_start(
                    init, str(model_dir), summary.get("sft"), selection_set, audio_root, out, resolved.get("eval")
                ),
            )
        barrier()
        start = load_json(out / "grpo-init.json")
        summary["grpo_init"] = start
        summary["grpo"] = train_grpo(
            start["path"], out / "data" / "rl.jsonl", audio_root, stage["grpo"], dtype=dtype, **grpo
        )
    if is_main():
        write_json(out / "summary.json", summary)
        if remote:
            publish(out, remote)
    return summary


def run_models(run_dir: str, prefix: str = "") -> dict[str, str]:
    """The evaluable checkpoints of a post-training run, named ``<prefix><stage>``."""
    run = Path(run_dir)
    finals = {stage: run / stage / "final" for stage in ("sft", "grpo")}
    return {f"{prefix}{stage}": str(p) for stage, p in finals.items() if (p / "config.json").is_file()}


def evaluate_stage(
    models: dict[str, str],
    corpus_dir: str,
    labels_dir: str,
    out_dir: str,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Evaluate named models on the labelled held-out split as the harness's ``synthetic`` task, with audio and in
    silence: ``<out>/<name>/`` is each model's ``audiomcq eval`` output, and ``<out>/metrics.json`` maps each name to
    its summary with the checkpoint's ``stage`` and ``step`` (what selection reads)."""
    from audiomcq.evaluation.harness import EvalConfig, run_eval
    from audiomcq.evaluation.select import SELECTION_TASK, checkpoint_of

    out = Path(out_dir)
    cfg = _recipe(recipe, overrides, out)["eval"]
    data = {SELECTION_TASK: Path(labels_dir) / "eval" / "labelled.jsonl"}
    audio_root: dict[str, str | Path | None] = {SELECTION_TASK: Path(corpus_dir) / "loop"}
    # the whole split in one chunk, so one engine call batches it (each silence length shared across the split)
    config = EvalConfig(batch_size=cfg["batch_size"], max_new_tokens=cfg["max_new_tokens"], chunk_size=ONE_CHUNK)
    results = {
        name: {**run_eval(path, data, audio_root, out / name, config), **checkpoint_of(name, path)}
        for name, path in models.items()
    }
    write_json(out / "metrics.json", results)
    return results


@timed
def select_stage(metrics_dirs: list[str], out_dir: str) -> dict[str, Any]:
    """Pick the best evaluated model by the selection rule (``audiomcq.evaluation.select.RULE``); writes
    ``selection.json``."""
    from audiomcq.evaluation.select import select_evaluated

    selection = select_evaluated(metrics_dirs)
    write_json(Path(out_dir) / "selection.json", selection)
    return selection


@timed
def evaluate_named(
    name: str,
    models_path: str,
    corpus_dir: str,
    labels_dir: str,
    out_dir: str,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, float]:
    """Evaluate the base model (``name`` = ``base``) or every checkpoint of a run (``name`` = its paradigm);
    returns the headline accuracies as flat metrics for a KFP UI."""
    models = {"base": models_path} if name == "base" else run_models(models_path, f"{name}/")
    from audiomcq.evaluation.select import SELECTION_TASK

    results = evaluate_stage(models, corpus_dir, labels_dir, out_dir, recipe, overrides)
    flat = {}
    for model, summary in results.items():
        for mode, scored in summary["tasks"][SELECTION_TASK]["modes"].items():
            for group in ("total", "ac_strong"):
                if group in scored:
                    flat[f"{model.replace('/', '-')}-{mode}-{group}"] = scored[group]["accuracy"]
    return flat
