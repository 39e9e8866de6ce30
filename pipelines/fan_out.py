"""The fan-out shape the scale-out pipelines share: one task per shard in a ParallelFor, then a merge of their
outputs in shard order. The pipelines themselves live one per module (``filter.py``, ``sdg.py``, ``evaluate.py``,
``train.py``), so ``kfp dsl compile --py pipelines/<module>.py`` finds exactly one."""

from typing import Any

from kfp import dsl

from audiomcq.pipelines.placement import place


def fan_out(
    shard_op: Any, merge_op: Any, stage: str, output: str, inputs: dict, shards: Any, publish: Any, *, what: str = ""
) -> Any:
    """One ``shard_op`` task per shard (placed as ``stage``; it reads its inputs by URI), then ``merge_op`` over
    their ``output`` artifacts. ``what`` names the work in the run graph (default: the stage): "<what> shard" in
    a loop "shards", then "merge shards"."""
    with dsl.ParallelFor(shards, name="shards") as shard:
        part = shard_op(**inputs, shard=shard, shards=shards).set_display_name(f"{what or stage} shard")
        place(part, stage, reads_uris=True)
    merged = merge_op(shards=dsl.Collected(part.outputs[output]), publish=publish)
    return place(merged.set_display_name("merge shards"), "merge")
