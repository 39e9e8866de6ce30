"""``audiomcq-post-training``: synth -> base + filter models -> ACF -> paradigms in parallel -> eval -> select."""

from kfp import dsl

from components import acf_filter, evaluate, post_train, pretrain, report, select, synth


@dsl.pipeline(name="audiomcq-post-training", description="The AudioMCQ loop on the embedded default.")
def post_training(
    recipe: str = "demo",
    overrides: list = [],  # noqa: B006 - KFP pipeline defaults are compiled, never mutated
    paradigms: list = ["weak_to_strong", "mixed_to_strong"],  # noqa: B006
    filter_roles: list = ["0", "1", "2"],  # noqa: B006
) -> str:
    """Returns the selected model's path."""
    common = {"recipe": recipe, "overrides": overrides}
    corpus = synth(**common).outputs["corpus"]
    base = pretrain(role="base", corpus=corpus, **common).outputs["model"]
    with dsl.ParallelFor(filter_roles) as role:
        filter_model = pretrain(role=role, corpus=corpus, **common)
    labels = acf_filter(corpus=corpus, filter_models=dsl.Collected(filter_model.outputs["model"]), **common)
    data = {"corpus": corpus, "labels": labels.outputs["labels"]}
    base_eval = evaluate(name="base", models=base, **data, **common)
    with dsl.ParallelFor(paradigms) as paradigm:
        run = post_train(paradigm=paradigm, base=base, **data, **common)
        run_eval = evaluate(name=paradigm, models=run.outputs["run"], **data, **common)
    chosen = select(results=dsl.Collected(run_eval.outputs["results"]), base_results=base_eval.outputs["results"])
    report(
        corpus=corpus,
        labels=labels.outputs["labels"],
        results=dsl.Collected(run_eval.outputs["results"]),
        base_results=base_eval.outputs["results"],
        runs=dsl.Collected(run.outputs["run"]),
        selection=chosen.outputs["selection"],
    )
    return chosen.outputs["Output"]
