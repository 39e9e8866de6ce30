"""Components of ``audiomcq-filter``: thin shims over ``audiomcq.stages.filter`` (one import, one call each)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from audiomcq.components.images import image


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def filter_cells(models: list, shards: list) -> list:
    """The models x shards fan-out (filter_cells)."""
    from audiomcq.stages.filter import filter_cells

    return filter_cells(models, shards)


@dsl.component(base_image=image("infer"), install_kfp_package=False)
def filter_answer(data: str, models: list, audio_root: str, settings: dict, cell: dict, answers: Output[Dataset]):
    """One filter model on one shard, in silence (filter_answer)."""
    from audiomcq.stages.filter import filter_answer

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
    """Labels from every cell, in input order; published to S3 (filter_label)."""
    from audiomcq.stages.filter import filter_label

    stats = filter_label(
        data, models, [a.path for a in answers], settings, len(shards), labels.path, publish, summary.path
    )
    labels.metadata.update({"uri": stats["uri"], "weak": stats["weak"], "strong": stats["strong"]})
