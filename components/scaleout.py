"""Components of the fan-out pipelines: a shard and its merge. Logic lives in ``audiomcq.stages_scaleout``."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components.images import image


@dsl.component(base_image=image("infer"), install_kfp_package=False)
def filter_shard(data: str, models: list, audio_root: str, settings: dict, shard: int, shards: list,
                 labels: Output[Dataset]):  # fmt: skip
    """ACF over one shard with every filter model (audiomcq.stages_scaleout.filter_shard)."""
    from audiomcq.stages_scaleout import filter_shard

    stats = filter_shard(data, models, audio_root, labels.path, settings, shard, len(shards))
    labels.metadata.update({"weak": stats["weak"], "strong": stats["strong"]})


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def filter_merge(shards: Input[list[Dataset]], publish: str, labels: Output[Dataset]):
    """Merge the shards in order; publish to S3 (audiomcq.stages_scaleout.filter_merge)."""
    from audiomcq.stages_scaleout import filter_merge

    labels.metadata["uri"] = filter_merge([s.path for s in shards], labels.path, publish)["uri"]


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def generate_shard(sources: dict, settings: dict, benchmarks: dict, cache: str, shard: int, shards: list,
                   samples: Output[Dataset]):  # fmt: skip
    """Dataset generation over one shard (audiomcq.stages_scaleout.generate_shard)."""
    from audiomcq.stages_scaleout import generate_shard

    summary = generate_shard(sources, samples.path, settings, shard, len(shards), benchmarks, cache)
    samples.metadata.update({"samples": summary["samples"], "rejects": summary["rejects"]})


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def generate_merge(shards: Input[list[Dataset]], publish: str, samples: Output[Dataset]):
    """Concatenate the shards; publish to S3 (audiomcq.stages_scaleout.generate_merge)."""
    from audiomcq.stages_scaleout import generate_merge

    samples.metadata["uri"] = generate_merge([s.path for s in shards], samples.path, publish)["uri"]


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
def train_paradigm(model: str, labelled: str, audio_root: str, recipe: str, overrides: list, paradigm: str,
                   selection: str, publish: str, run: Output[Model]):  # fmt: skip
    """SFT then GRPO for one paradigm (audiomcq.stages_scaleout.train_paradigm); the run's location in metadata."""
    from audiomcq.stages_scaleout import train_paradigm

    run.metadata["uri"] = train_paradigm(model, labelled, audio_root, run.path, recipe, overrides, paradigm,
                                         selection, publish)  # fmt: skip


@dsl.component(base_image=image("infer"), install_kfp_package=False)
def select_checkpoint(run: Input[Model], audio_root: str, max_new_tokens: int, selection: Output[Dataset]) -> str:
    """Every complete checkpoint on the run's selection set; the best (audiomcq.evaluation.select.select_run)."""
    from audiomcq.evaluation.select import select_run

    return select_run(run.metadata["uri"], audio_root, selection.path, max_new_tokens=max_new_tokens)["selected"][
        "path"
    ]
