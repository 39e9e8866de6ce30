"""``audiomcq-post-training``: synth -> base + filter models -> ACF -> paradigms in parallel -> eval -> select ->
promotion gate (and the report)."""

from typing import Any

from kfp import dsl

from components import acf_filter, evaluate, post_train, pretrain, promote, report, select, synth
from pipelines.placement import place


def build() -> Any:
    """The pipeline, built now: placement reads its compile-time settings (``pipelines.placement``) when the graph
    is traced, so building at call time lets one process compile variants."""

    @dsl.pipeline(name="audiomcq-post-training", description="The AudioMCQ loop on the embedded default.")
    def post_training(
        recipe: str = "demo",
        overrides: list = [],  # noqa: B006 - KFP pipeline defaults are compiled, never mutated
        paradigms: list = ["weak_to_strong", "mixed_to_strong"],  # noqa: B006
        filter_roles: list = ["0", "1", "2"],  # noqa: B006
        publish: str = "",  # s3://bucket/prefix: corpus, models, labels, runs go under <publish>/<run id>
        serving: dict = {"apply": False},  # noqa: B006 - the promotion gate's settings; apply: false = dry run
    ) -> str:
        """Returns the selected model's path."""
        common = {"recipe": recipe, "overrides": overrides}
        # S3 outputs go under <publish>/<run id> (retries resume, reruns start afresh). The run id goes to each
        # task as a placeholder, not as an upstream task's output: kfp.local hands a ParallelFor body the loop
        # item in place of an upstream parameter output.
        store = {"publish": publish, "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
        corpus = place(synth(**common, **store), "synth").outputs["corpus"]
        base = place(pretrain(role="base", corpus=corpus, **store, **common), "pretrain").outputs["model"]
        with dsl.ParallelFor(filter_roles) as role:
            filter_model = place(pretrain(role=role, corpus=corpus, **store, **common), "pretrain")
        filters = dsl.Collected(filter_model.outputs["model"])
        labels = place(acf_filter(corpus=corpus, filter_models=filters, **store, **common), "filter")
        data = {"corpus": corpus, "labels": labels.outputs["labels"]}
        base_eval = place(evaluate(name="base", models=base, **data, **common), "eval")
        with dsl.ParallelFor(paradigms) as paradigm:
            run = place(post_train(paradigm=paradigm, base=base, **store, **data, **common), "train")
            run_eval = place(evaluate(name=paradigm, models=run.outputs["run"], **data, **common), "eval")
        results = dsl.Collected(run_eval.outputs["results"])
        chosen = place(select(results=results, base_results=base_eval.outputs["results"]), "select")
        place(
            report(
                corpus=corpus,
                labels=labels.outputs["labels"],
                results=dsl.Collected(run_eval.outputs["results"]),
                base_results=base_eval.outputs["results"],
                runs=dsl.Collected(run.outputs["run"]),
                selection=chosen.outputs["selection"],
            ),
            "report",
        )
        gate = promote(selection=chosen.outputs["selection"], results=dsl.Collected(run_eval.outputs["results"]),
                       settings=serving, **store,
                       base_results=base_eval.outputs["results"], **data)  # fmt: skip
        place(gate, "promote")
        return chosen.outputs["Output"]

    return post_training
