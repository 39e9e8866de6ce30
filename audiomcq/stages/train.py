"""Step bodies of ``audiomcq-train``: one paradigm in the step's pod or as a Kubeflow TrainJob, then checkpoint
selection."""

from __future__ import annotations

from pathlib import Path

from audiomcq.timing import timed


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
    from audiomcq.config import load_recipe
    from audiomcq.errors import AudioMCQError
    from audiomcq.infra import storage
    from audiomcq.train import launch
    from audiomcq.train.paradigm import post_train

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
    from audiomcq.config import load_recipe, recipe_names
    from audiomcq.errors import AudioMCQError
    from audiomcq.infra import storage
    from audiomcq.infra.k8s import default_namespace
    from audiomcq.infra.k8s.trainjob import from_recipe, job_name, render, run_trainjob

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
    from audiomcq.evaluation.select import select_run
    from audiomcq.evaluation.views import selection_views
    from audiomcq.infra import storage

    selection = select_run(run, audio_root, out_dir, max_new_tokens=max_new_tokens)
    selection_views(selection, markdown_path, html_path)
    path = selection["selected"]["path"]
    if storage.is_s3(run):
        path = f"{run.rstrip('/')}/{Path(path).relative_to(storage.local_tree(run)).as_posix()}"
    return path
