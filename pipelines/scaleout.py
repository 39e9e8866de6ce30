"""``audiomcq-filter`` and ``audiomcq-sdg`` (a ParallelFor over shards, then an in-order merge published to S3), and
``audiomcq-evaluate`` (a ParallelFor over benchmark tasks, then one table)."""

from typing import Any

from kfp import dsl

from components import scaleout as ops
from components.images import image
from pipelines.placement import place


def fan_out(shard_op: Any, merge_op: Any, stage: str, output: str, inputs: dict, shards: Any, publish: Any) -> Any:
    """One ``shard_op`` task per shard (placed as ``stage``; it reads its inputs by URI), then ``merge_op`` over
    their ``output`` artifacts."""
    with dsl.ParallelFor(shards) as shard:
        part = place(shard_op(**inputs, shard=shard, shards=shards), stage, reads_uris=True)
    return place(merge_op(shards=dsl.Collected(part.outputs[output]), publish=publish), "merge")


def build_filter() -> Any:
    """Audio-contribution filtering of a record file (local path or s3://): one task per (filter model, shard), so
    K models on N shards run K x N ways in parallel; the labels then follow the paper's rule over the K models."""

    @dsl.pipeline(name="audiomcq-filter", description="ACF fanned out over filter models x shards, labelled in order.")
    def audiomcq_filter(
        data: str,
        models: list,
        audio_root: str = "",
        settings: dict = {},  # noqa: B006 - FilterConfig fields; empty = the paper's (silence:30, 2 of K). One-key
        # defaults only: kfp renders multi-key dicts in a per-process order, which would make the YAML unstable.
        shards: list = [0, 1, 2, 3],  # noqa: B006
        publish: str = "",
    ) -> None:
        inputs = {"data": data, "models": models, "settings": settings}
        cells = place(ops.filter_cells(models=models, shards=shards), "plan")
        with dsl.ParallelFor(cells.output) as cell:
            answer = place(ops.filter_answer(**inputs, audio_root=audio_root, cell=cell), "filter", reads_uris=True)
        answers = dsl.Collected(answer.outputs["answers"])
        place(ops.filter_label(**inputs, shards=shards, answers=answers, publish=publish), "merge", reads_uris=True)

    return audiomcq_filter


def build_sdg() -> Any:
    """Dataset generation from caption sources, fanned out over shards."""

    @dsl.pipeline(name="audiomcq-sdg", description="AudioMCQ-style generation over shards, merged in order.")
    def audiomcq_sdg(
        sources: dict,
        settings: dict = {"llm": {"backend": "template"}},  # noqa: B006 - compiled default
        benchmarks: dict = {},  # noqa: B006
        cache: str = "",
        shards: list = [0, 1, 2, 3],  # noqa: B006
        publish: str = "",
    ) -> None:
        inputs = {"sources": sources, "settings": settings, "benchmarks": benchmarks, "cache": cache}
        fan_out(ops.generate_shard, ops.generate_merge, "generate", "samples", inputs, shards, publish)

    return audiomcq_sdg


def build_evaluate() -> Any:
    """A model on benchmark tasks, one task per parallel branch."""

    @dsl.pipeline(name="audiomcq-evaluate", description="Benchmarks scored like the official scripts, in parallel.")
    def audiomcq_evaluate(
        model: str,
        tasks: list,  # [{"name": "mmau-test-mini", "data": "s3://…/mmau-test-mini.json", "audio_root": "s3://…"}]
        settings: dict = {},  # noqa: B006 - EvalConfig fields; empty = greedy, 256 new tokens, silent control on
    ) -> None:
        with dsl.ParallelFor(tasks) as task:
            result = place(ops.eval_task(model=model, task=task, settings=settings), "eval", reads_uris=True)
        place(ops.eval_report(results=dsl.Collected(result.outputs["results"])), "report")

    return audiomcq_evaluate


def build_train() -> Any:
    """One paradigm from an ACF-labelled pool: SFT, GRPO, then checkpoint selection on the held-out set. The
    recipe's ``launch.nodes`` picks the branch: 1 trains in the step's pod; more submit a Kubeflow TrainJob."""

    @dsl.pipeline(name="audiomcq-train", description="One paradigm: allocation, SFT, GRPO, checkpoint selection.")
    def audiomcq_train(
        model: str,
        labelled: str,
        audio_root: str,
        selection: str,
        paradigm: str = "weak_to_strong",
        recipe: str = "weak_to_strong",
        overrides: list = [],  # noqa: B006 - compiled default
        publish: str = "",
        max_new_tokens: int = 256,
    ) -> None:
        scope = place(ops.run_prefix(publish=publish, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "plan")
        inputs = {"model": model, "labelled": labelled, "audio_root": audio_root, "recipe": recipe,
                  "overrides": overrides, "paradigm": paradigm, "selection": selection,
                  "publish": scope.output}  # fmt: skip  # <publish>/<run id>: retries resume, reruns start afresh
        nodes = place(ops.launch_nodes(recipe=recipe, overrides=overrides), "plan")
        with dsl.If(nodes.output > 1, name="multi-node"):
            job = place(ops.train_on_cluster(**inputs, train_image=image("train")), "submit")
            chosen = ops.select_checkpoint(
                run=job.outputs["run"], audio_root=audio_root, max_new_tokens=max_new_tokens
            )
            place(chosen, "eval", reads_uris=True)
        with dsl.Else(name="single-node"):
            run = place(ops.train_paradigm(**inputs), "train")
            chosen = ops.select_checkpoint(
                run=run.outputs["run"], audio_root=audio_root, max_new_tokens=max_new_tokens
            )
            place(chosen, "eval", reads_uris=True)

    return audiomcq_train
