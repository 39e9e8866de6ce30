"""Step bodies of ``audiomcq-filter``: the models x shards cells, each cell's answers, then the labels.

Inputs may be ``s3://`` URIs (streamed or synced to local disk); each shard writes its output to the task's
artifact directory; the merge combines the shards in order and, when ``publish`` names an ``s3://`` prefix, uploads
the result there with a ``_COMPLETE`` marker (big outputs live in S3, their URI in the artifact's metadata).
"""

from __future__ import annotations

from typing import Any

from audiomcq.infra.storage import publish_under
from audiomcq.timing import timed


def filter_cells(models: list[Any], shards: list[int]) -> list[dict[str, int]]:
    """The models x shards fan-out of ``audiomcq-filter``: one cell per (filter model, shard)."""
    return [{"model": m, "shard": int(s), "shards": len(shards)} for m in range(len(models)) for s in shards]


@timed
def filter_answer(
    data: str, models: list[Any], audio_root: str, settings: dict[str, Any], cell: dict[str, int], out_dir: str
) -> dict[str, Any]:
    """One cell: filter model ``cell["model"]`` answers shard ``cell["shard"]`` under every probe (``settings``:
    FilterConfig fields). kfp's local runner passes whole fan-out items, so the cell comes as one dict."""
    from audiomcq.acf import FilterConfig
    from audiomcq.acf.run import answer_with

    config = FilterConfig.from_dict(settings, shard=(int(cell["shard"]), int(cell["shards"])))
    return answer_with(data, models, int(cell["model"]), audio_root or None, out_dir, config)


@timed
def filter_label(
    data: str,
    models: list[Any],
    answer_dirs: list[str],
    settings: dict[str, Any],
    shards: int,
    out_dir: str,
    publish: str = "",
    markdown_path: str = "",
) -> dict[str, Any]:
    """Labels from every cell's answers, in input order; published to ``publish`` when it is an ``s3://`` prefix;
    the statistics as Markdown for the KFP UI."""
    from audiomcq.acf import FilterConfig
    from audiomcq.acf.run import label_answers
    from audiomcq.evaluation.views import filter_markdown

    stats = label_answers(data, models, answer_dirs, out_dir, FilterConfig.from_dict(settings), shards)
    if markdown_path:
        filter_markdown(stats, markdown_path)
    return {**stats, "uri": publish_under(out_dir, publish)}
