"""Stage functions of the fan-out pipelines (``audiomcq-filter``: models x shards cells, then the labels;
``audiomcq-sdg``: one shard, then the merge; ``audiomcq-evaluate``; ``audiomcq-train``).

Inputs may be ``s3://`` URIs (streamed or synced to local disk); each shard writes its output to the task's
artifact directory; the merge combines the shards in order and, when ``publish`` names an ``s3://`` prefix, uploads
the result there with a ``_COMPLETE`` marker (big outputs live in S3, their URI in the artifact's metadata).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audiomcq.storage import publish_under
from audiomcq.timing import timed


def filter_cells(models: list[Any], shards: list[int]) -> list[dict[str, int]]:
    """The models x shards fan-out of ``audiomcq-filter``: one cell per (filter model, shard)."""
    return [{"model": m, "shard": int(s), "shards": len(shards)} for m in range(len(models)) for s in shards]


@timed
def filter_answer(
    data: str, models: list[Any], audio_root: str, settings: dict[str, Any], cell: dict[str, int], out_dir: str
) -> dict[str, Any]:
    """One cell: filter model ``cell["model"]`` answers shard ``cell["shard"]`` under every probe (``settings``:
    FilterConfig fields). kfp's local runner passes whole fan-out items, so the cell comes as one dict."""
    from audiomcq.acf import FilterConfig
    from audiomcq.acf.run import answer_with

    config = FilterConfig.from_dict(settings, shard=(int(cell["shard"]), int(cell["shards"])))
    return answer_with(data, models, int(cell["model"]), audio_root or None, out_dir, config)


@timed
def filter_label(
    data: str,
    models: list[Any],
    answer_dirs: list[str],
    settings: dict[str, Any],
    shards: int,
    out_dir: str,
    publish: str = "",
    markdown_path: str = "",
) -> dict[str, Any]:
    """Labels from every cell's answers, in input order; published to ``publish`` when it is an ``s3://`` prefix;
    the statistics as Markdown for the KFP UI."""
    from audiomcq.acf import FilterConfig
    from audiomcq.acf.run import label_answers
    from audiomcq.views import filter_markdown

    stats = label_answers(data, models, answer_dirs, out_dir, FilterConfig.from_dict(settings), shards)
    if markdown_path:
        filter_markdown(stats, markdown_path)
    return {**stats, "uri": publish_under(out_dir, publish)}


@timed
def generate_shard(
    sources: dict[str, str],
    out_dir: str,
    settings: dict[str, Any],
    shard: int,
    count: int,
    benchmarks: dict[str, str] | None = None,
    cache: str = "",
) -> dict[str, Any]:
    """Dataset generation over shard ``shard`` of ``count`` (``settings``: LLMSpec fields under ``llm``)."""
    from audiomcq.sdg.llm import LLMSpec
    from audiomcq.sdg.run import GenConfig, generate_dataset

    llm = LLMSpec.from_dict(settings.get("llm", {}))
    config = GenConfig(
        tries=int(settings.get("tries", 3)), chunk_size=int(settings.get("chunk_size", 64)), shard=(shard, count)
    )
    return generate_dataset(sources, out_dir, llm, config, benchmarks, cache or None)


@timed
def generate_merge(shard_dirs: list[str], out_dir: str, publish: str = "", markdown_path: str = "") -> dict[str, Any]:
    """Concatenate the shards' samples and rejects (shard order), sum their counts and type/source mix (shares
    recomputed over the whole), and write the summary as Markdown for the KFP UI."""
    from collections import Counter

    from audiomcq.jsonio import atomic_writer, load_json, write_json
    from audiomcq.views import generate_markdown

    out = Path(out_dir)
    totals: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    mix: dict[str, Counter[str]] = {"by_type": Counter(), "by_source": Counter()}
    paper: dict[str, dict[str, Any]] = {"by_type": {}, "by_source": {}}
    for name in ("samples.jsonl", "rejects.jsonl"):
        with atomic_writer(out / name) as f:
            for d in shard_dirs:
                f.write((Path(d) / name).read_text())
    for d in shard_dirs:
        summary = load_json(Path(d) / "summary.json")
        totals.update({"samples": summary["samples"], "rejects": summary["rejects"]})
        reasons.update(summary["reject_reasons"])
        for key, counts in mix.items():
            for group, row in summary.get(key, {}).items():
                counts[group] += row["count"]
                paper[key][group] = row.get("paper_share")
    n = totals["samples"] or 1
    merged = {
        **totals,
        "shards": len(shard_dirs),
        "reject_reasons": dict(sorted(reasons.items())),
        **{
            key: {
                g: {"count": c, "share": 100.0 * c / n, "paper_share": paper[key][g]}
                for g, c in sorted(counts.items())
            }
            for key, counts in mix.items()
        },
    }
    write_json(out / "summary.json", merged)
    if markdown_path:
        generate_markdown(merged, markdown_path)
    return {**merged, "uri": publish_under(out_dir, publish)}


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
def train_paradigm(
    model: str,
    labelled: str,
    audio_root: str,
    out_dir: str,
    recipe: str,
    overrides: list[str],
    paradigm: str,
    selection: str = "",
    publish: str = "",
) -> str:
    """The ``audiomcq-train`` step (see ``train_in_pod``)."""
    return train_in_pod(model, labelled, audio_root, out_dir, recipe, overrides, paradigm, selection, publish)


def train_in_pod(
    model: str,
    labelled: str,
    audio_root: str,
    out_dir: str,
    recipe: str,
    overrides: list[str],
    paradigm: str,
    selection: str = "",
    publish: str = "",
) -> str:
    """One paradigm (allocation, SFT, GRPO) from an ACF-labelled pool, in this pod: in-process on one device, or
    under torchrun with one rank per GPU when the pod has several (up to the recipe's ``launch.gpus_per_node``).
    Inputs may be ``s3://``; with an ``s3://`` ``publish`` the run (checkpoints included) lives there. Returns
    where the run is."""
    from audiomcq import storage
    from audiomcq.config import load_recipe
    from audiomcq.errors import AudioMCQError
    from audiomcq.stages import post_train
    from audiomcq.train import launch

    run = publish if storage.is_s3(publish) else out_dir
    args = train_run_args(model, labelled, audio_root, run, recipe, overrides, paradigm, selection)
    wanted = int((load_recipe(recipe, overrides).get("launch") or {}).get("gpus_per_node", 1))
    ranks = min(wanted, launch.gpu_count())
    if ranks > 1 and not launch.inside_launch():
        # ``train run`` fetches the s3:// inputs once, then starts the ranks (as on a TrainJob node)
        code = launch.relaunch(launch.Launch(nproc_per_node=ranks), ["train", *args])
        if code:
            raise AudioMCQError(f"{paradigm}: training under torchrun ({ranks} ranks) exited with status {code}")
        return run
    scratch = Path(out_dir) / ".inputs"
    local = {
        k: str(storage.fetch(v, scratch / k)) if v else ""
        for k, v in (("labelled", labelled), ("selection", selection))
    }
    post_train(
        storage.local_model(model),
        local["labelled"],
        storage.local_tree(audio_root),
        run,
        recipe,
        overrides,
        paradigm=paradigm,
        selection=local["selection"] or None,
    )
    return run


def train_run_args(
    model: str,
    labelled: str,
    audio_root: str,
    out: str,
    recipe: str,
    overrides: list[str],
    paradigm: str,
    selection: str = "",
) -> list[str]:
    """The ``audiomcq train run`` arguments of one paradigm (a TrainJob's nodes and a multi-GPU pod run these)."""
    args = [
        "run",
        "--model",
        model,
        "--data",
        labelled,
        "--audio-root",
        audio_root,
        "--out",
        out,
        "--recipe",
        recipe,
        *[a for o in overrides for a in ("--set", o)],
        "--set",
        f"allocation.paradigm={paradigm}",  # last: the step's paradigm wins
    ]
    return args + (["--selection", selection] if selection else [])


def launch_nodes(recipe: str, overrides: list[str]) -> int:
    """How many nodes the recipe's ``launch`` section asks for: 1 trains in the pipeline step's own pod, more run
    as a Kubeflow TrainJob (``train_on_cluster``)."""
    from audiomcq.config import load_recipe

    return int((load_recipe(recipe, overrides).get("launch") or {}).get("nodes", 1))


@timed
def train_on_cluster(
    model: str,
    labelled: str,
    audio_root: str,
    recipe: str,
    overrides: list[str],
    paradigm: str,
    selection: str,
    publish: str,
    image: str,
    namespace: str = "",
) -> str:
    """One paradigm as a TrainJob on ``launch.nodes`` nodes running ``audiomcq train run``; this step only submits
    it and follows it to its end. Every node reads the inputs and writes the run, so they must all be ``s3://``;
    the recipe must be a packaged one (the nodes run the same image). Returns the run's URI."""
    from audiomcq import storage
    from audiomcq.config import load_recipe, recipe_names
    from audiomcq.errors import AudioMCQError
    from audiomcq.k8s import default_namespace
    from audiomcq.k8s.trainjob import run_trainjob
    from audiomcq.trainjob import from_recipe, job_name, render

    uris = {"model": model, "labelled": labelled, "audio_root": audio_root, "publish": publish}
    local = [k for k, v in {**uris, "selection": selection or "s3://"}.items() if not storage.is_s3(v)]
    if local:
        raise AudioMCQError(f"a multi-node run reads its inputs and writes its run in S3: {local} must be s3://")
    if recipe not in recipe_names():
        raise AudioMCQError(f"a multi-node run needs a packaged recipe (the nodes run the image's), not {recipe!r}")
    cluster = from_recipe(load_recipe(recipe, overrides)["launch"], namespace or default_namespace(), image)
    args = train_run_args(model, labelled, audio_root, publish, recipe, overrides, paradigm, selection)
    run_trainjob(render(job_name(publish), args, cluster), timeout_s=cluster.deadline_s)
    return publish


@timed
def select_checkpoint(
    run: str, audio_root: str, out_dir: str, max_new_tokens: int, markdown_path: str, html_path: str
) -> str:
    """The run's best checkpoint on its selection set (``select --run``), with the table and curves for the UI.
    Returns where the checkpoint lives: under the run's ``s3://`` prefix for a run in S3, not this pod's cache."""
    from audiomcq import storage
    from audiomcq.evaluation.select import select_run
    from audiomcq.views import selection_views

    selection = select_run(run, audio_root, out_dir, max_new_tokens=max_new_tokens)
    selection_views(selection, markdown_path, html_path)
    path = selection["selected"]["path"]
    if storage.is_s3(run):
        path = f"{run.rstrip('/')}/{Path(path).relative_to(storage.local_tree(run)).as_posix()}"
    return path
