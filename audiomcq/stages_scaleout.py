"""Stage functions of the fan-out pipelines (``audiomcq-filter``, ``audiomcq-sdg``): one shard, then the merge.

Inputs may be ``s3://`` URIs (streamed or synced to local disk); each shard writes its output to the task's
artifact directory; the merge combines the shards in order and, when ``publish`` names an ``s3://`` prefix, uploads
the result there with a ``_COMPLETE`` marker (big outputs live in S3, their URI in the artifact's metadata).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audiomcq.timing import timed


@timed
def filter_shard(data: str, models: list[str], audio_root: str, out_dir: str, settings: dict[str, Any],
                 shard: int, count: int) -> dict[str, Any]:  # fmt: skip
    """Label shard ``shard`` of ``count`` with every filter model (``settings``: FilterConfig fields)."""
    from audiomcq.acf import FilterConfig
    from audiomcq.acf.run import run_filter_uri

    config = FilterConfig.from_dict(settings, shard=(shard, count))
    return run_filter_uri(data, models, audio_root or None, out_dir, config, Path(out_dir) / "scratch")


@timed
def filter_merge(shard_dirs: list[str], out_dir: str, publish: str = "") -> dict[str, Any]:
    """One labelled set from the shards (in shard order); uploaded to ``publish`` when it is an ``s3://`` prefix."""
    from audiomcq.acf.run import merge_shards
    from audiomcq.jsonio import load_json

    ordered = sorted(shard_dirs, key=lambda d: load_json(Path(d) / "stats.json")["shard"][0])  # fan-ins may reorder
    stats = merge_shards(ordered, out_dir)
    return {**stats, "uri": _publish(out_dir, publish)}


@timed
def generate_shard(sources: dict[str, str], out_dir: str, settings: dict[str, Any], shard: int, count: int,
                   benchmarks: dict[str, str] | None = None, cache: str = "") -> dict[str, Any]:  # fmt: skip
    """Dataset generation over shard ``shard`` of ``count`` (``settings``: LLMSpec fields under ``llm``)."""
    from audiomcq.sdg.llm import LLMSpec
    from audiomcq.sdg.run import GenConfig, generate_dataset

    llm = LLMSpec.from_dict(settings.get("llm", {}))
    config = GenConfig(tries=int(settings.get("tries", 3)), chunk_size=int(settings.get("chunk_size", 64)),
                       shard=(shard, count))  # fmt: skip
    return generate_dataset(sources, out_dir, llm, config, benchmarks, cache or None)


@timed
def generate_merge(shard_dirs: list[str], out_dir: str, publish: str = "") -> dict[str, Any]:
    """Concatenate the shards' samples and rejects (shard order) and sum their counts."""
    from collections import Counter

    from audiomcq.jsonio import atomic_writer, load_json, write_json

    out = Path(out_dir)
    totals: Counter[str] = Counter()
    for name in ("samples.jsonl", "rejects.jsonl"):
        with atomic_writer(out / name) as f:
            for d in shard_dirs:
                f.write((Path(d) / name).read_text())
    for d in shard_dirs:
        summary = load_json(Path(d) / "summary.json")
        totals.update({"samples": summary["samples"], "rejects": summary["rejects"]})
        totals.update({f"reject: {k}": v for k, v in summary["reject_reasons"].items()})
    merged = {**totals, "shards": len(shard_dirs)}
    write_json(out / "summary.json", merged)
    return {**merged, "uri": _publish(out_dir, publish)}


def _publish(out_dir: str, uri: str) -> str:
    from audiomcq import storage

    if not storage.is_s3(uri):
        return ""
    storage.publish(out_dir, uri)
    return uri


@timed
def eval_task(model: str, spec: dict[str, str], out_dir: str, settings: dict[str, Any]) -> dict[str, float]:
    """One benchmark task of ``audiomcq eval``, ``spec`` = ``{name, data, audio_root}`` (one fan-out item; kfp's
    local runner passes whole items, not their fields); ``settings``: EvalConfig fields. Returns flat metrics."""
    task, data, audio_root = spec["name"], spec["data"], spec.get("audio_root", "")
    from audiomcq.config import whole_numbers
    from audiomcq.evaluation import EvalConfig, run_eval

    config = EvalConfig(**whole_numbers(EvalConfig, settings))
    summary = run_eval(model, {task: data}, {task: audio_root or None}, out_dir, config)
    flat = {}
    for mode, table in summary["tasks"][task]["modes"].items():
        for group in ("total", "ac_strong"):
            if group in table:
                flat[f"{task}-{mode}-{group}"] = table[group]["accuracy"]
    return flat


@timed
def eval_report(result_dirs: list[str], markdown_path: str) -> str:
    """One Markdown table over every task's evaluation (the ``audiomcq eval`` table)."""
    from audiomcq.evaluation.harness import markdown
    from audiomcq.jsonio import load_json

    summaries = [load_json(Path(d) / "metrics.json") for d in result_dirs]
    merged = {"model": summaries[0]["model"] if summaries else "", "tasks": {}}
    for s in summaries:
        merged["tasks"].update(s["tasks"])
    text = markdown(merged)
    Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
    Path(markdown_path).write_text(text)
    return text


@timed
def train_paradigm(model: str, labelled: str, audio_root: str, out_dir: str, recipe: str, overrides: list[str],
                   paradigm: str, selection: str = "", publish: str = "") -> str:  # fmt: skip
    """One paradigm (allocation, SFT, GRPO) from an ACF-labelled pool; inputs may be ``s3://``; with an ``s3://``
    ``publish`` the run (checkpoints included) lives there. Returns where the run is."""
    from audiomcq import storage
    from audiomcq.stages import post_train

    scratch = Path(out_dir) / ".inputs"
    local = {k: str(storage.fetch(v, scratch / k)) if v else "" for k, v in (("labelled", labelled),
                                                                             ("selection", selection))}  # fmt: skip
    run = publish if storage.is_s3(publish) else out_dir
    post_train(storage.local_model(model), local["labelled"], storage.local_tree(audio_root), run, recipe,
               overrides, paradigm=paradigm, selection=local["selection"] or None)  # fmt: skip
    return run
