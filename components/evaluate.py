"""Components of ``audiomcq-evaluate``: thin shims over ``audiomcq.stages.evaluate`` (one import, one call each)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from audiomcq.components.images import image


@dsl.component(base_image=image("infer"), install_kfp_package=False)
def eval_task(model: str, task: dict, settings: dict, results: Output[Dataset], metrics: Output[Metrics]):
    """One benchmark task, scored like the official script (eval_task)."""
    from audiomcq.stages.evaluate import eval_task

    for key, value in eval_task(model, task, results.path, settings).items():
        metrics.log_metric(key, value)


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def eval_report(results: Input[list[Dataset]], markdown: Output[Markdown]):
    """The evaluation table over all tasks, for the KFP UI (eval_report)."""
    from audiomcq.stages.evaluate import eval_report

    eval_report([r.path for r in results], markdown.path)
