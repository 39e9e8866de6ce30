"""``audiomcq-ingest``: fill an empty store with the base models, the AudioMCQ dataset and the benchmarks, once,
before any other pipeline runs.

Compile it with ``kfp dsl compile --py pipelines/ingest.py --output ingest.yaml`` or ``audiomcq pipeline compile``.

Caching: a hub revision is resolved to its commit by a step that is never cached (a branch such as main moves), and
the fetch that follows is cached on that commit (with the destination and the other settings). A pinned commit
therefore makes a re-run a cache hit; main makes a re-run fetch again exactly when main has moved. Benchmarks are
never cached: their audio follows the hub repos' default branches. Every fetch resumes, so a re-run that is not a
cache hit downloads only what is missing or changed.
"""

from kfp import dsl

from audiomcq.components import ingest as ops
from audiomcq.pipelines.placement import place


@dsl.pipeline(name="audiomcq-ingest")
def audiomcq_ingest(
    # Empty by default, with the usual choices as examples: KFP writes a default list of dicts with more than one
    # key into the YAML's header in an order that changes from one compile to the next.
    models: list = [],  # noqa: B006 - KFP pipeline defaults are compiled, never mutated
    datasets: list = [],  # noqa: B006
    benchmarks: list = [],  # noqa: B006
    hub: str = "",
    sites: dict = {},  # noqa: B006
) -> None:
    """Brings what the other pipelines read into the store: models, the AudioMCQ dataset and benchmarks, verified.

    Run it once on an empty store, before the other pipelines, with the entries of each kind to fetch (the examples
    below are the usual first set; an empty list skips a kind). Every file is checked against the checksum its
    publisher lists, the fetch-manifest.json of each destination records what was fetched at which commit, and
    the _COMPLETE marker is written last, so a stage never reads a half-fetched prefix. Each entry is its own step
    on a CPU pod, side by side. A hub revision is resolved to its commit first; the fetch is cached on that commit,
    so a re-run with a pinned commit is a cache hit, and with main it fetches again only if main has moved.
    Benchmarks are never cached. A re-run that fetches resumes: files already in the store with the published
    digest are not downloaded again. Gated repositories need a Hugging Face token in the Secret audiomcq-hf (key
    token); it is never a parameter.

    Args:
        models: The models to fetch, one step each: repo (a Hugging Face model repo), revision (a branch, tag or
            commit; main if left out) and to (the s3:// prefix it goes to); optional include (more file patterns).
            Empty: none. Example: [{"repo": "Qwen/Qwen2.5-Omni-7B", "revision": "main", "to":
            "s3://audiomcq/models/qwen2.5-omni-7b"}, {"repo": "Qwen/Qwen2-Audio-7B-Instruct", "revision": "main",
            "to": "s3://audiomcq/models/qwen2-audio-7b-instruct"}].
        datasets: The datasets to fetch, one step each: name (audiomcq), revision of its hub repo (main if left
            out), to (the s3:// prefix) and sources (whose audio: auto for every source that can be fetched, none,
            or names such as "Clotho,SpeechCraft"). Empty: none. Example: [{"name": "audiomcq", "revision":
            "main", "to": "s3://audiomcq/data/audiomcq", "sources": "auto"}].
        benchmarks: The benchmarks to fetch, one step each: name (mmau-test-mini, mmau-test, mmar, mmsu, dcase2025)
            and to (the s3:// prefix); optional split (dcase2025: dev, the default, or another split) and
            metadata_revision (a GitHub commit instead of the pinned one). dcase2025 is gated. Empty: none.
            Example: [{"name": "mmau-test-mini", "to": "s3://audiomcq/benchmarks/mmau-test-mini"}, {"name":
            "mmar", "to": "s3://audiomcq/benchmarks/mmar"}, {"name": "mmsu", "to": "s3://audiomcq/benchmarks/mmsu"}].
        hub: The Hugging Face Hub endpoint, e.g. a mirror. Empty: the pods' HF_ENDPOINT, else
            https://huggingface.co. Example: "https://hf-mirror.example.com".
        sites: Download sites to take from a mirror instead: name (zenodo, openslr, github, mirg) -> base URL.
            Empty: the publishers' own. Example: {"zenodo": "https://zenodo-mirror.example.com", "github":
            "https://github-raw-mirror.example.com"}.
    """
    with dsl.ParallelFor(models, name="models") as model:
        commit = ops.resolve_model(model=model, endpoint=hub)
        place(commit.set_display_name("resolve model revision"), "resolve")
        fetched = ops.fetch_model(model=model, commit=commit.output, endpoint=hub)
        place(fetched.set_display_name("fetch model"), "fetch")
    with dsl.ParallelFor(datasets, name="datasets") as dataset:
        commit = ops.resolve_dataset(dataset=dataset, endpoint=hub)
        place(commit.set_display_name("resolve dataset revision"), "resolve")
        fetched = ops.fetch_dataset(dataset=dataset, commit=commit.output, endpoint=hub, sites=sites)
        place(fetched.set_display_name("fetch dataset"), "fetch")
    with dsl.ParallelFor(benchmarks, name="benchmarks") as benchmark:
        fetched = ops.fetch_benchmark(benchmark=benchmark, endpoint=hub, sites=sites)
        # its audio comes from hub repos at their default branch, which nothing pins: never cached
        place(fetched.set_display_name("fetch benchmark"), "fetch", reads_uris=True)
