"""``audiomcq-filter``: audio-contribution filtering of a record file fanned out over filter models x shards.

Compile it with ``kfp dsl compile --py pipelines/filter.py --output filter.yaml`` or ``audiomcq pipeline compile``.
"""

from kfp import dsl

from audiomcq.components import filter as ops
from audiomcq.pipelines.placement import place


@dsl.pipeline(name="audiomcq-filter")
def audiomcq_filter(
    data: str,
    models: list,
    audio_root: str = "",
    settings: dict = {},  # noqa: B006 - KFP pipeline defaults are compiled, never mutated
    shards: list = [0, 1, 2, 3],  # noqa: B006
    publish: str = "",
) -> None:
    """Audio-contribution filtering (ACF) of a record file, K filter models x N shards in parallel.

    Each filter model answers each shard with the audio replaced by silence (one task per model x shard); the
    labels then follow the paper's rule over the K models (weak if at least min_correct of them are right without
    the audio, else strong) and are written in input order. The labelled file and its statistics go to publish.

    Args:
        data: The records to label: an AudioMCQ JSONL file as an s3:// URI (or a path inside the pod). Example:
            "s3://audiomcq/data/pool.jsonl".
        models: The filter models, one per entry: s3:// prefixes of model directories (or Hugging Face ids the
            pods can download). At least one. Example: ["s3://audiomcq/models/f1", "s3://audiomcq/models/f2",
            "s3://audiomcq/models/f3"].
        audio_root: Where the records' relative audio paths resolve: an s3:// prefix or a directory. Empty: the
            paths in data are used as they are. Example: "s3://audiomcq/audio".
        settings: Filter settings (FilterConfig fields: probes, min_correct, label_rule, samples, temperature,
            max_new_tokens, chunk_size, batch_size, validate, budget_margin, max_length). Empty: the paper's, 30 s
            of silence and weak if 2 of 3 models are right; each model's answer budget from the data. Example:
            {"probes": ["silence:30"], "min_correct": 2, "batch_size": 32}.
        shards: The shard indices; each model answers every shard in its own task, so K models on these N shards
            run K x N ways. Example: [0, 1, 2, 3, 4, 5, 6, 7].
        publish: S3 prefix for the labelled records (labelled.jsonl) and their statistics; empty keeps them in
            the run's artifacts only. Example: "s3://audiomcq/acf/pool".
    """
    inputs = {"data": data, "models": models, "settings": settings}
    cells = place(ops.filter_cells(models=models, shards=shards).set_display_name("plan model × shard cells"), "plan")
    with dsl.ParallelFor(cells.output, name="model × shard cells") as cell:
        answer = ops.filter_answer(**inputs, audio_root=audio_root, cell=cell)
        place(answer.set_display_name("filter model × shard"), "filter", reads_uris=True)
    answers = dsl.Collected(answer.outputs["answers"])
    label = ops.filter_label(**inputs, shards=shards, answers=answers, publish=publish)
    place(label.set_display_name("label in input order"), "merge", reads_uris=True)
