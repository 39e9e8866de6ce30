"""Components of ``audiomcq-demo``: thin shims over ``audiomcq.stages.demo`` (one import, one call
each)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from audiomcq.components.images import image


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def synth(recipe: str, overrides: list, publish: str, run_id: str, corpus: Output[Dataset]):
    """Synthetic audio MCQ corpus: pre-training pool, loop pool and held-out split (synth_stage)."""
    from audiomcq.stages.demo import synth_stage

    corpus.metadata["uri"] = synth_stage(corpus.path, recipe, overrides, publish, run_id)["uri"]


@dsl.component(base_image=image("train"), install_kfp_package=False)
def pretrain(
    recipe: str, overrides: list, publish: str, run_id: str, role: str, corpus: Input[Dataset], model: Output[Model]
):
    """Build and pre-train the base model or filter model ``role`` (pretrain_stage)."""
    from audiomcq.stages.demo import pretrain_stage

    model.metadata["uri"] = pretrain_stage(corpus.path, model.path, role, recipe, overrides, publish, run_id)["uri"]


@dsl.component(base_image=image("infer"), install_kfp_package=False)
def acf_filter(
    recipe: str,
    overrides: list,
    publish: str,
    run_id: str,
    corpus: Input[Dataset],
    filter_models: Input[list[Model]],
    labels: Output[Dataset],
):
    """Audio-contribution filtering with the filter models in silence (filter_stage)."""
    from audiomcq.stages.demo import filter_stage

    labels.metadata["uri"] = filter_stage(
        corpus.path, [m.path for m in filter_models], labels.path, recipe, overrides, publish, run_id
    )["uri"]


@dsl.component(base_image=image("train"), install_kfp_package=False)
def post_train(
    recipe: str,
    overrides: list,
    publish: str,
    run_id: str,
    paradigm: str,
    base: Input[Model],
    corpus: Input[Dataset],
    labels: Input[Dataset],
    run: Output[Model],
):
    """One paradigm: allocation, SFT from the base, GRPO from the SFT model (post_train_stage)."""
    from audiomcq.stages.demo import post_train_stage

    run.metadata["uri"] = post_train_stage(
        base.path, corpus.path, labels.path, paradigm, run.path, recipe, overrides, publish, run_id
    )["uri"]


@dsl.component(base_image=image("infer"), install_kfp_package=False)
def evaluate(
    recipe: str,
    overrides: list,
    name: str,
    models: Input[Model],
    corpus: Input[Dataset],
    labels: Input[Dataset],
    results: Output[Dataset],
    metrics: Output[Metrics],
):
    """Held-out accuracy with audio and in silence of a model or a run's checkpoints (evaluate_named)."""
    from audiomcq.stages.demo import evaluate_named

    for key, value in evaluate_named(
        name, models.path, corpus.path, labels.path, results.path, recipe, overrides
    ).items():
        metrics.log_metric(key, value)


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def select(results: Input[list[Dataset]], base_results: Input[Dataset], selection: Output[Dataset]) -> str:
    """Pick the best checkpoint on the selection metric (select_stage)."""
    from audiomcq.stages.demo import select_stage

    return select_stage([r.path for r in results] + [base_results.path], selection.path)["model"]


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def report(
    corpus: Input[Dataset],
    labels: Input[Dataset],
    results: Input[list[Dataset]],
    base_results: Input[Dataset],
    runs: Input[list[Model]],
    selection: Input[Dataset],
    markdown: Output[Markdown],
    html: Output[HTML],
):
    """The demo's results table, report and plot (audiomcq.evaluation.report.write_report)."""
    from audiomcq.evaluation.report import write_report

    write_report(
        labels.path,
        [base_results.path] + [r.path for r in results],
        [r.path for r in runs],
        selection.path,
        markdown.path,
        html.path,
        corpus_dir=corpus.path,
    )


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def promote(
    selection: Input[Dataset],
    results: Input[list[Dataset]],
    base_results: Input[Dataset],
    corpus: Input[Dataset],
    labels: Input[Dataset],
    settings: dict,
    publish: str,
    run_id: str,
    decision: Output[Dataset],
    summary: Output[Markdown],
) -> str:
    """The promotion gate on the selected checkpoint (promote_stage); dry unless applied."""
    from audiomcq.stages.demo import promote_stage

    return promote_stage(
        selection.path,
        [r.path for r in results] + [base_results.path],
        corpus.path,
        labels.path,
        decision.path,
        settings,
        publish,
        summary.path,
        run_id,
    )["action"]
