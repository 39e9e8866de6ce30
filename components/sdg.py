"""Components of ``audiomcq-sdg``: thin shims over ``audiomcq.stages.sdg`` (one import, one call each)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from audiomcq.components.images import image


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def generate_shard(
    sources: dict, settings: dict, benchmarks: dict, cache: str, shard: int, shards: list, samples: Output[Dataset]
):
    """Dataset generation over one shard (generate_shard)."""
    from audiomcq.stages.sdg import generate_shard

    summary = generate_shard(sources, samples.path, settings, shard, len(shards), benchmarks, cache)
    samples.metadata.update({"samples": summary["samples"], "rejects": summary["rejects"]})


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def generate_merge(shards: Input[list[Dataset]], publish: str, samples: Output[Dataset], summary: Output[Markdown]):
    """Concatenate the shards; publish to S3 (generate_merge)."""
    from audiomcq.stages.sdg import generate_merge

    samples.metadata["uri"] = generate_merge([s.path for s in shards], samples.path, publish, summary.path)["uri"]
