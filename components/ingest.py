"""Components of the ingest pipeline: the fetch library (``audiomcq.fetch``) from the hub and the publishers' sites
into the store. A revision is resolved to its commit by its own (never cached) step, so that the fetch step that
follows is cached on the commit; each fetch returns the manifest it wrote, which the KFP UI shows as its output.
``endpoint`` is the hub (empty: the pod's ``$HF_ENDPOINT``, else huggingface.co), ``sites`` overrides download
sites by name. The hub token reaches the pod as ``$HF_TOKEN`` from a Secret (pipelines/placement.py)."""

from kfp import dsl

from audiomcq.components.images import image


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def resolve_model(model: dict, endpoint: str) -> str:
    """The commit a model repo's revision (branch, tag or commit; default main) names now (audiomcq.fetch.hub)."""
    from audiomcq.fetch.hub import resolve

    return resolve(model["repo"], revision=model.get("revision") or None, endpoint=endpoint or None).commit


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def fetch_model(model: dict, commit: str, endpoint: str) -> dict:
    """A model's weights, configs, tokenizer and templates at ``commit`` into ``model["to"]``; the manifest
    (audiomcq.fetch.fetch_model)."""
    from audiomcq.fetch import fetch_model

    return fetch_model(
        model["repo"], model["to"], revision=commit, endpoint=endpoint or None, include=tuple(model.get("include", ()))
    )


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def resolve_dataset(dataset: dict, endpoint: str) -> str:
    """The commit a dataset's hub repo is at, at its revision (default main) (audiomcq.fetch.hub)."""
    from audiomcq.fetch import DATASETS, hub

    return hub.resolve(
        DATASETS[dataset["name"].lower()],
        revision=dataset.get("revision") or None,
        repo_type="dataset",
        endpoint=endpoint or None,
    ).commit


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def fetch_dataset(dataset: dict, commit: str, endpoint: str, sites: dict) -> dict:
    """A dataset's release at ``commit``, checked against the record contract, and its sources' audio into
    ``dataset["to"]``; the manifest (audiomcq.fetch.fetch_dataset)."""
    from audiomcq.fetch import fetch_dataset

    return fetch_dataset(
        dataset["name"],
        dataset["to"],
        revision=commit,
        endpoint=endpoint or None,
        sources=dataset.get("sources", "auto"),
        endpoints=sites,
    )


@dsl.component(base_image=image("tools"), install_kfp_package=False)
def fetch_benchmark(benchmark: dict, endpoint: str, sites: dict) -> dict:
    """A benchmark's metadata and audio into ``benchmark["to"]``, laid out as evaluation reads it; the manifest
    (audiomcq.fetch.fetch_benchmark)."""
    from audiomcq.fetch import fetch_benchmark

    return fetch_benchmark(
        benchmark["name"],
        benchmark["to"],
        endpoint=endpoint or None,
        endpoints=sites,
        split=benchmark.get("split", "dev"),
        metadata_revision=benchmark.get("metadata_revision") or None,
    )
