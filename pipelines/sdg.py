"""``audiomcq-sdg``: AudioMCQ-style dataset generation from caption sources, fanned out over shards.

Compile it with ``kfp dsl compile --py pipelines/sdg.py --output sdg.yaml`` or ``audiomcq pipeline compile``.
"""

from kfp import dsl

from audiomcq.components import sdg as ops
from audiomcq.pipelines.fan_out import fan_out


@dsl.pipeline(name="audiomcq-sdg")
def audiomcq_sdg(
    sources: dict,
    settings: dict = {"llm": {"backend": "template"}},  # noqa: B006 - KFP pipeline defaults are compiled, never mutated
    benchmarks: dict = {},  # noqa: B006
    cache: str = "",
    shards: list = [0, 1, 2, 3],  # noqa: B006
    publish: str = "",
) -> None:
    """Synthetic audio MCQ generation from captioned audio datasets, sharded, merged in order.

    Every shard turns its share of the sources' captions into multiple-choice questions (through an LLM, or from
    templates without one), deduplicated and decontaminated against the benchmarks; the merge concatenates the
    shards in order and publishes samples.jsonl, rejects.jsonl and summary.json. With the default settings no LLM
    and no Secret is needed.

    Args:
        sources: Caption sources to generate from: source name -> s3:// prefix (or directory) holding its metadata
            files. Names: Clotho, AudioCaps, MusicCaps, LP-MusicCaps, SpeechCraft, TACOS, CompA-R, or synthetic (an
            audiomcq corpus JSONL). Example: {"Clotho": "s3://audiomcq/sources/clotho", "AudioCaps":
            "s3://audiomcq/sources/audiocaps"}.
        settings: Generation settings: llm (backend template, openai or transformers; model, base_url,
            api_key_env, concurrency, requests_per_second, timeout, retries, temperature, max_tokens, seed), tries,
            chunk_size. The default, the template backend, needs no LLM. Example: {"llm": {"backend": "openai",
            "base_url": "http://vllm.llm.svc:8000/v1", "model": "Qwen/Qwen2.5-72B-Instruct", "api_key_env":
            "LLM_API_KEY"}}.
        benchmarks: Benchmarks to decontaminate against: name (mmau, mmar, mmsu, dcase2025) -> metadata file.
            Empty: no decontamination. Example: {"mmau": "s3://audiomcq/benchmarks/mmau-test-mini.json"}.
        cache: Where LLM answers are cached so a retried shard does not ask again (an s3:// prefix or a
            directory); empty: inside each shard's own output. Example: "s3://audiomcq/cache/sdg".
        shards: The shard indices, one generation task each. Example: [0, 1, 2, 3, 4, 5, 6, 7].
        publish: S3 prefix for the merged dataset; empty keeps it in the run's artifacts only. Example:
            "s3://audiomcq/sdg/clotho".
    """
    inputs = {"sources": sources, "settings": settings, "benchmarks": benchmarks, "cache": cache}
    fan_out(ops.generate_shard, ops.generate_merge, "generate", "samples", inputs, shards, publish)
