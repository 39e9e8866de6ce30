"""Components of ``audiomcq-train``: thin shims over ``audiomcq.stages.train`` (one import, one call each)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Model, Output

from audiomcq.components.images import image


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
    """SFT then GRPO for one paradigm (train_paradigm); the run's location in metadata."""
    from audiomcq.stages.train import train_paradigm

    run.metadata["uri"] = train_paradigm(
        model, labelled, audio_root, run.path, recipe, overrides, paradigm, selection, publish
    )


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def run_prefix(publish: str, run_id: str) -> str:
    """This run's S3 prefix under ``publish`` (audiomcq.infra.storage.run_prefix)."""
    from audiomcq.infra.storage import run_prefix

    return run_prefix(publish, run_id)


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def launch_nodes(recipe: str, overrides: list) -> int:
    """The nodes a recipe's ``launch`` section asks for (launch_nodes)."""
    from audiomcq.stages.train import launch_nodes

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
    """One paradigm as a Kubeflow TrainJob, followed to its end (train_on_cluster)."""
    from audiomcq.stages.train import train_on_cluster

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
    """Every complete checkpoint on the run's selection set; the best (select_checkpoint)."""
    from audiomcq.stages.train import select_checkpoint

    return select_checkpoint(run.metadata["uri"], audio_root, selection.path, max_new_tokens, table.path, curves.path)
