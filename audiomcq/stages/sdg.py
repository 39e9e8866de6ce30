"""Step bodies of ``audiomcq-sdg``: dataset generation over one shard, then the merge in shard order.

Inputs may be ``s3://`` URIs (streamed or synced to local disk); each shard writes its output to the task's
artifact directory; the merge combines the shards in order and, when ``publish`` names an ``s3://`` prefix, uploads
the result there with a ``_COMPLETE`` marker (big outputs live in S3, their URI in the artifact's metadata).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audiomcq.infra.storage import publish_under
from audiomcq.timing import timed


@timed
def generate_shard(
    sources: dict[str, str],
    out_dir: str,
    settings: dict[str, Any],
    shard: int,
    count: int,
    benchmarks: dict[str, str] | None = None,
    cache: str = "",
) -> dict[str, Any]:
    """Dataset generation over shard ``shard`` of ``count`` (``settings``: LLMSpec fields under ``llm``)."""
    from audiomcq.sdg.llm import LLMSpec
    from audiomcq.sdg.run import GenConfig, generate_dataset

    llm = LLMSpec.from_dict(settings.get("llm", {}))
    config = GenConfig(
        tries=int(settings.get("tries", 3)), chunk_size=int(settings.get("chunk_size", 64)), shard=(shard, count)
    )
    return generate_dataset(sources, out_dir, llm, config, benchmarks, cache or None)


@timed
def generate_merge(shard_dirs: list[str], out_dir: str, publish: str = "", markdown_path: str = "") -> dict[str, Any]:
    """Concatenate the shards' samples and rejects (shard order), sum their counts and type/source mix (shares
    recomputed over the whole), and write the summary as Markdown for the KFP UI."""
    from collections import Counter

    from audiomcq.evaluation.views import generate_markdown
    from audiomcq.jsonio import atomic_writer, load_json, write_json

    out = Path(out_dir)
    totals: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    mix: dict[str, Counter[str]] = {"by_type": Counter(), "by_source": Counter()}
    paper: dict[str, dict[str, Any]] = {"by_type": {}, "by_source": {}}
    for name in ("samples.jsonl", "rejects.jsonl"):
        with atomic_writer(out / name) as f:
            for d in shard_dirs:
                f.write((Path(d) / name).read_text())
    for d in shard_dirs:
        summary = load_json(Path(d) / "summary.json")
        totals.update({"samples": summary["samples"], "rejects": summary["rejects"]})
        reasons.update(summary["reject_reasons"])
        for key, counts in mix.items():
            for group, row in summary.get(key, {}).items():
                counts[group] += row["count"]
                paper[key][group] = row.get("paper_share")
    n = totals["samples"] or 1
    merged = {
        **totals,
        "shards": len(shard_dirs),
        "reject_reasons": dict(sorted(reasons.items())),
        **{
            key: {
                g: {"count": c, "share": 100.0 * c / n, "paper_share": paper[key][g]}
                for g, c in sorted(counts.items())
            }
            for key, counts in mix.items()
        },
    }
    write_json(out / "summary.json", merged)
    if markdown_path:
        generate_markdown(merged, markdown_path)
    return {**merged, "uri": publish_under(out_dir, publish)}
