"""``audiomcq-demo``: synth -> base + filter models -> ACF -> paradigms in parallel -> eval -> select ->
promotion gate (and the report).

Compile it with the SDK's CLI (``kfp dsl compile --py pipelines/demo.py --output demo.yaml``) or
with ``audiomcq pipeline compile``; both give the same YAML.
"""

from kfp import dsl

from audiomcq.components.demo import acf_filter, evaluate, post_train, pretrain, promote, report, select, synth
from audiomcq.pipelines.placement import place


@dsl.pipeline(name="audiomcq-demo")
def audiomcq_demo(
    recipe: str = "demo",
    overrides: list = [],  # noqa: B006 - KFP pipeline defaults are compiled, never mutated
    paradigms: list = ["weak_to_strong", "mixed_to_strong"],  # noqa: B006
    filter_roles: list = ["0", "1", "2"],  # noqa: B006
    publish: str = "",
    serving: dict = {"apply": False},  # noqa: B006 - one key: kfp orders multi-key dicts per process
) -> str:
    """The AudioMCQ post-training loop, end to end on tiny models, on one recipe.

    Synthesizes the recipe's audio MCQ corpus, pre-trains a base model and K filter models, labels every question
    weak or strong in audio contribution (ACF: the filter models answer with the audio replaced by silence), then
    post-trains each paradigm (SFT, then GRPO) from the base model in parallel, evaluates every checkpoint on the
    held-out split, selects the best, writes a report and runs the promotion gate (dry unless serving.apply is
    true). It is the demo of the platform: the models are tiny ones it builds and pre-trains itself, and every task
    is sized for CPU nodes (2 CPUs, 8 GiB; no GPU), so it runs on any cluster with the audiomcq images. Its models
    and corpus stay in the run's artifacts unless publish names an S3 prefix. Real models train in audiomcq-train.

    Args:
        recipe: Recipe name (demo, or smoke for a check of a few minutes) or the path of a recipe YAML inside the
            image with the same sections (synth, base, filters, filter, paradigms, sft, grpo, eval). It sets the
            corpus, the tiny models and every hyperparameter.
        overrides: Recipe overrides, each "section.key=value", applied after the recipe. Example:
            ["base.steps=500", "sft.trainer_args.max_steps=200"]. Empty: the recipe as written.
        paradigms: Post-training paradigms to run side by side; the best checkpoint over all of them (and the base
            model) is selected. Example: ["weak_to_strong", "mixed_to_strong", "mixed_to_mixed"].
        filter_roles: One filter model is pre-trained per entry: the index (as a string) of a model in the
            recipe's filters list. Example: ["0", "1", "2"] for the recipe's three filter models.
        publish: S3 prefix (s3://bucket/prefix) under which the corpus, models, labels and runs are kept, in
            <publish>/<run id>. Needed for serving.apply true (a cluster serves from S3). Empty: artifacts only.
            Example: "s3://audiomcq/runs".
        serving: Promotion gate settings. apply false (the default) only decides and renders the InferenceService;
            apply true changes the cluster. Other keys: name, namespace, service_account, runtime, canary, margin,
            ac_strong_tolerance, floor, gpus, cpu, memory, node_selector, tolerations, timeout, and the smoke
            check's smoke_size, smoke_min_size, smoke_min_listening, smoke_tolerance, smoke_confidence. Example:
            {"apply": true, "namespace": "audiomcq", "canary": 10, "margin": 0.5}.

    Returns:
        The selected model's path.
    """
    common = {"recipe": recipe, "overrides": overrides}
    # S3 outputs go under <publish>/<run id> (retries resume, reruns start afresh). The run id goes to each
    # task as a placeholder, not as an upstream task's output: kfp.local hands a ParallelFor body the loop
    # item in place of an upstream parameter output.
    store = {"publish": publish, "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
    corpus = place(synth(**common, **store).set_display_name("synthesize corpus"), "synth").outputs["corpus"]
    base = place(
        pretrain(role="base", corpus=corpus, **store, **common).set_display_name("pretrain base"), "demo_train"
    ).outputs["model"]
    # A display name is fixed when the pipeline compiles, so every iteration of a loop shows the same one; the UI
    # tells the iterations apart by their index, and each one's input (the role, the paradigm) is in its details.
    with dsl.ParallelFor(filter_roles, name="filter models") as role:
        filter_model = pretrain(role=role, corpus=corpus, **store, **common).set_display_name("pretrain filter model")
        place(filter_model, "demo_train")
    filters = dsl.Collected(filter_model.outputs["model"])
    labels = acf_filter(corpus=corpus, filter_models=filters, **store, **common)
    place(labels.set_display_name("label audio contribution (ACF)"), "demo_infer")
    data = {"corpus": corpus, "labels": labels.outputs["labels"]}
    base_eval = place(
        evaluate(name="base", models=base, **data, **common).set_display_name("evaluate base"), "demo_infer"
    )
    with dsl.ParallelFor(paradigms, name="paradigms") as paradigm:
        run = post_train(paradigm=paradigm, base=base, **store, **data, **common)
        place(run.set_display_name("post-train paradigm (SFT, GRPO)"), "demo_train")
        run_eval = evaluate(name=paradigm, models=run.outputs["run"], **data, **common)
        place(run_eval.set_display_name("evaluate paradigm checkpoints"), "demo_infer")
    results = dsl.Collected(run_eval.outputs["results"])
    chosen = select(results=results, base_results=base_eval.outputs["results"])
    place(chosen.set_display_name("select best checkpoint"), "select")
    written = report(
        corpus=corpus,
        labels=labels.outputs["labels"],
        results=dsl.Collected(run_eval.outputs["results"]),
        base_results=base_eval.outputs["results"],
        runs=dsl.Collected(run.outputs["run"]),
        selection=chosen.outputs["selection"],
    )
    place(written.set_display_name("write report"), "report")
    gate = promote(
        selection=chosen.outputs["selection"],
        results=dsl.Collected(run_eval.outputs["results"]),
        settings=serving,
        **store,
        base_results=base_eval.outputs["results"],
        **data,
    )
    place(gate.set_display_name("promotion gate"), "promote")
    return chosen.outputs["Output"]
