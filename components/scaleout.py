"""Components of the fan-out pipelines (cells or shards, then their merge), evaluation and one-paradigm training.
Logic lives in ``audiomcq.stages_scaleout``."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.images import image


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def filter_cells(models: list, shards: list) -> list:
    """The models x shards fan-out (audiomcq.stages_scaleout.filter_cells)."""
    from audiomcq.stages_scaleout import filter_cells

    return filter_cells(models, shards)


@dsl.component(base_image=image("infer"), install_kfp_package=False)
def filter_answer(data: str, models: list, audio_root: str, settings: dict, cell: dict, answers: Output[Dataset]):
    """One filter model on one shard, in silence (audiomcq.stages_scaleout.filter_answer)."""
    from audiomcq.stages_scaleout import filter_answer

    answers.metadata.update(filter_answer(data, models, audio_root, settings, cell, answers.path))


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def filter_label(
    data: str,
    models: list,
    settings: dict,
    shards: list,
    answers: Input[list[Dataset]],
    publish: str,
    labels: Output[Dataset],
    summary: Output[Markdown],
):
    """Labels from every cell, in input order; published to S3 (audiomcq.stages_scaleout.filter_label)."""
    from audiomcq.stages_scaleout import filter_label

    stats = filter_label(
        data, models, [a.path for a in answers], settings, len(shards), labels.path, publish, summary.path
    )
    labels.metadata.update({"uri": stats["uri"], "weak": stats["weak"], "strong": stats["strong"]})


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def generate_shard(
    sources: dict, settings: dict, benchmarks: dict, cache: str, shard: int, shards: list, samples: Output[Dataset]
):
    """Dataset generation over one shard (audiomcq.stages_scaleout.generate_shard)."""
    from audiomcq.stages_scaleout import generate_shard

    summary = generate_shard(sources, samples.path, settings, shard, len(shards), benchmarks, cache)
    samples.metadata.update({"samples": summary["samples"], "rejects": summary["rejects"]})


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def generate_merge(shards: Input[list[Dataset]], publish: str, samples: Output[Dataset], summary: Output[Markdown]):
    """Concatenate the shards; publish to S3 (audiomcq.stages_scaleout.generate_merge)."""
    from audiomcq.stages_scaleout import generate_merge

    samples.metadata["uri"] = generate_merge([s.path for s in shards], samples.path, publish, summary.path)["uri"]


@dsl.component(base_image=image("infer"), install_kfp_package=False)
def eval_task(model: str, task: dict, settings: dict, results: Output[Dataset], metrics: Output[Metrics]):
    """One benchmark task, scored like the official script (audiomcq.stages_scaleout.eval_task)."""
    from audiomcq.stages_scaleout import eval_task

    for key, value in eval_task(model, task, results.path, settings).items():
        metrics.log_metric(key, value)


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def eval_report(results: Input[list[Dataset]], markdown: Output[Markdown]):
    """The evaluation table over all tasks, for the KFP UI (audiomcq.stages_scaleout.eval_report)."""
    from audiomcq.stages_scaleout import eval_report

    eval_report([r.path for r in results], markdown.path)


@dsl.component(base_image=image("train"), install_kfp_package=False)
def train_paradigm(
    model: str,
    labelled: str,
    audio_root: str,
    recipe: str,
    overrides: list,
    paradigm: str,
    selection: str,
    publish: str,
    run: Output[Model],
):
    """SFT then GRPO for one paradigm (audiomcq.stages_scaleout.train_paradigm); the run's location in metadata."""
    from audiomcq.stages_scaleout import train_paradigm

    run.metadata["uri"] = train_paradigm(
        model, labelled, audio_root, run.path, recipe, overrides, paradigm, selection, publish
    )


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def run_prefix(publish: str, run_id: str) -> str:
    """This run's S3 prefix under ``publish`` (audiomcq.storage.run_prefix)."""
    from audiomcq.storage import run_prefix

    return run_prefix(publish, run_id)


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def launch_nodes(recipe: str, overrides: list) -> int:
    """The nodes a recipe's ``launch`` section asks for (audiomcq.stages_scaleout.launch_nodes)."""
    from audiomcq.stages_scaleout import launch_nodes

    return launch_nodes(recipe, overrides)


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def train_on_cluster(
    model: str,
    labelled: str,
    audio_root: str,
    recipe: str,
    overrides: list,
    paradigm: str,
    selection: str,
    publish: str,
    train_image: str,
    run: Output[Model],
):
    """One paradigm as a Kubeflow TrainJob, followed to its end (audiomcq.stages_scaleout.train_on_cluster)."""
    from audiomcq.stages_scaleout import train_on_cluster

    run.metadata["uri"] = train_on_cluster(
        model, labelled, audio_root, recipe, overrides, paradigm, selection, publish, train_image
    )


@dsl.component(base_image=image("infer"), install_kfp_package=False)
def select_checkpoint(
    run: Input[Model],
    audio_root: str,
    max_new_tokens: int,
    selection: Output[Dataset],
    table: Output[Markdown],
    curves: Output[HTML],
) -> str:
    """Every complete checkpoint on the run's selection set; the best (audiomcq.stages_scaleout.select_checkpoint)."""
    from audiomcq.stages_scaleout import select_checkpoint

    return select_checkpoint(run.metadata["uri"], audio_root, selection.path, max_new_tokens, table.path, curves.path)
