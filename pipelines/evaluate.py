"""``audiomcq-evaluate``: a model on benchmark tasks, one parallel branch per task, then one table.

Compile it with ``kfp dsl compile --py pipelines/evaluate.py --output evaluate.yaml`` or ``audiomcq pipeline
compile``.
"""

from kfp import dsl

from audiomcq.components import evaluate as ops
from audiomcq.pipelines.placement import place


@dsl.pipeline(name="audiomcq-evaluate")
def audiomcq_evaluate(
    model: str,
    tasks: list,
    settings: dict = {},  # noqa: B006 - KFP pipeline defaults are compiled, never mutated
) -> None:
    """Benchmark evaluation of one model, scored like the official scripts, one task per branch.

    Each task answers its benchmark's questions with the audio and, as a control, in silence; the last step puts
    every task's accuracy (total and on strong audio-contribution items) in one table.

    Args:
        model: The model to evaluate: an s3:// prefix of a model directory (or a Hugging Face id the pods can
            download). Example: "s3://audiomcq/runs/<run id>/runs/weak_to_strong/grpo/final".
        tasks: The benchmark tasks, one branch each: name (a benchmark split such as mmau-test-mini), data (its
            metadata file) and audio_root (where its audio is). Example: [{"name": "mmau-test-mini", "data":
            "s3://audiomcq/benchmarks/mmau-test-mini.json", "audio_root": "s3://audiomcq/benchmarks/mmau"}].
        settings: Evaluation settings (EvalConfig fields: batch_size, max_new_tokens, chunk_size, silent_control,
            balanced, dtype, budget_margin, max_length). Empty: greedy, the answer budget from the data (longest
            answer plus a margin, stopping at </answer>), with the silent control. Example:
            {"max_new_tokens": 512, "balanced": true}.
    """
    with dsl.ParallelFor(tasks, name="benchmark tasks") as task:
        result = ops.eval_task(model=model, task=task, settings=settings)
        place(result.set_display_name("evaluate benchmark task"), "eval", reads_uris=True)
    table = ops.eval_report(results=dsl.Collected(result.outputs["results"]))
    place(table.set_display_name("evaluation table"), "report")
