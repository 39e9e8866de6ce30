"""Lineage of a served model: data -> recipe -> run -> checkpoint -> evaluation -> InferenceService revision.

A post-training run directory (local or ``s3://``) holds ``recipe.resolved.json``, ``summary.json`` (paradigm,
allocation, steps per stage) and ``data/`` (``sft.jsonl``, ``rl.jsonl``, ``selection.jsonl``); a checkpoint is
``<run>/<sft|grpo>/<final|checkpoint-N>``. The lineage document records content hashes (sha256 of each split and of
the canonical resolved recipe; a digest over the checkpoint's files: sha256 of each local file, or the S3 ETags of a
remote one, which needs no download), the evaluation's metrics files (hashed, and their per-task metrics in full,
so the next promotion can compare against this model without them), and, once promoted, the InferenceService's
revision. It is stored next to the model (``<model>/lineage.json`` unless told otherwise, local or ``s3://``); the
InferenceService carries the short form as ``audiomcq/*`` annotations, with ``audiomcq/lineage`` pointing at the
document. What cannot be found (a model outside a run) is listed under ``gaps``, never invented.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.infra import storage

log = logging.getLogger(__name__)
SCHEMA = "audiomcq.lineage/v1"
PREFIX = "audiomcq/"
SPLITS = ("sft.jsonl", "rl.jsonl", "selection.jsonl")
STAGES = ("sft", "grpo")
NOT_CONTENT = ("lineage.json", storage.COMPLETE)  # written after the model: not part of its digest


def _join(base: str, *parts: str) -> str:
    return "/".join([str(base).rstrip("/"), *parts])


def find_run(model_uri: str) -> str | None:
    """The run a checkpoint belongs to (``<run>/<sft|grpo>/<final|checkpoint-N>``), else None."""
    parts = str(model_uri).rstrip("/").rsplit("/", 2)
    if len(parts) == 3 and parts[1] in STAGES and (parts[2] == "final" or parts[2].startswith("checkpoint-")):
        return parts[0]
    return None


def file_hash(uri: str) -> dict[str, Any] | None:
    """sha256 and size of one file (local, or an S3 object streamed without touching the disk); None if absent."""
    digest, size = hashlib.sha256(), 0
    if storage.is_s3(uri):
        from minio.error import S3Error

        bucket, key = storage.split(uri)
        try:
            resp = storage.client().get_object(bucket, key)
        except S3Error as err:
            if err.code in ("NoSuchKey", "NoSuchBucket"):
                return None
            raise AudioMCQError(f"{uri}: cannot read ({err.code})") from err
        try:
            for chunk in resp.stream(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        finally:
            resp.close()
            resp.release_conn()
    else:
        path = Path(uri)
        if not path.is_file():
            return None
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    return {"uri": uri, "sha256": digest.hexdigest(), "bytes": size}


def read_json(uri: str) -> Any | None:
    """A JSON document (local or ``s3://``), or None when it does not exist."""
    from audiomcq.jsonio import load_json

    if not storage.is_s3(uri):
        return load_json(uri) if Path(uri).is_file() else None
    with tempfile.TemporaryDirectory(prefix="audiomcq-lineage-") as tmp:
        try:
            return load_json(storage.fetch(uri, tmp))
        except AudioMCQError as err:
            if "NoSuchKey" in str(err):
                return None
            raise


def write_json_uri(doc: Any, uri: str) -> str:
    """Write a JSON document to a local path or an ``s3://`` key."""
    if storage.is_s3(uri):
        data = json.dumps(doc, indent=2, ensure_ascii=False).encode()
        bucket, key = storage.split(uri)
        storage.client().put_object(bucket, key, io.BytesIO(data), len(data), content_type="application/json")
    else:
        from audiomcq.jsonio import write_json

        write_json(uri, doc)
    log.info("wrote %s", uri)
    return uri


def _combined(parts: dict[str, dict[str, Any]]) -> str:
    return hashlib.sha256("".join(f"{k}:{v['sha256']}\n" for k, v in sorted(parts.items())).encode()).hexdigest()


def checkpoint_digest(model_uri: str) -> dict[str, Any]:
    """A digest over the checkpoint's files: ``sha256`` of (path, sha256) per local file, or of (path, size, ETag)
    per S3 object."""
    lines = []
    if storage.is_s3(model_uri):
        bucket, prefix = storage.split(model_uri)
        prefix = prefix.rstrip("/") + "/"
        for obj in storage.client().list_objects(bucket, prefix=prefix, recursive=True):
            rel = obj.object_name[len(prefix) :]
            if rel not in NOT_CONTENT:
                lines.append(f"{rel}\t{obj.size}\t{(obj.etag or '').strip(chr(34))}")
        kind = "s3-etags"
    else:
        root = Path(model_uri)
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if rel not in NOT_CONTENT:
                lines.append(f"{rel}\t{(file_hash(str(path)) or {}).get('sha256')}")
        kind = "sha256-files"
    if not lines:
        raise AudioMCQError(f"{model_uri}: no model files there")
    lines.sort()
    return {"kind": kind, "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest(), "files": len(lines)}


def build(
    model_uri: str,
    metrics_uris: Sequence[str],
    tasks: dict[str, dict[str, Any]],
    run_uri: str | None = None,
) -> dict[str, Any]:
    """The lineage document of a candidate (everything but the InferenceService, which ``finish`` adds)."""
    gaps: list[str] = []
    run = run_uri or find_run(model_uri)
    name = str(model_uri).rstrip("/").rsplit("/", 1)[-1]
    stage = str(model_uri).rstrip("/").rsplit("/", 2)[-2] if find_run(model_uri) else None
    doc: dict[str, Any] = {"schema": SCHEMA, "data": None, "recipe": None, "run": None}
    summary = None
    if run is None:
        gaps.append(f"{model_uri} is not inside a post-training run (<run>/sft|grpo/...): data, recipe, run unknown")
    else:
        splits = {s: h for s in SPLITS if (h := file_hash(_join(run, "data", s))) is not None}
        if splits:
            doc["data"] = {"splits": splits, "sha256": _combined(splits)}
        else:
            gaps.append(f"{run}/data/ holds none of {', '.join(SPLITS)}")
        recipe = read_json(_join(run, "recipe.resolved.json"))
        if recipe is None:
            gaps.append(f"{run}/recipe.resolved.json is missing")
        else:
            canonical = json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()
            paradigm = (recipe.get("allocation") or {}).get("paradigm")
            digest = hashlib.sha256(canonical).hexdigest()
            doc["recipe"] = {"uri": _join(run, "recipe.resolved.json"), "sha256": digest, "paradigm": paradigm}
        summary = read_json(_join(run, "summary.json"))
        if summary is None:
            gaps.append(f"{run}/summary.json is missing (the run did not finish?)")
        doc["run"] = {
            "uri": run,
            "paradigm": (summary or {}).get("paradigm"),
            "steps": {s: (summary or {}).get(s, {}).get("steps") for s in STAGES if s in (summary or {})},
            "allocation": (summary or {}).get("allocation"),
        }
        start = (summary or {}).get("grpo_init")
        if start:  # where GRPO started and why (grpo.init); the candidates' scores stay in the run's summary
            doc["run"]["grpo_init"] = {k: start.get(k) for k in ("init", "stage", "step", "path", "why")}
    step = int(name[11:]) if name.startswith("checkpoint-") and name[11:].isdigit() else None
    if name == "final" and stage and summary:
        step = summary.get(stage, {}).get("steps")
    doc["checkpoint"] = {
        "uri": model_uri,
        "stage": stage,
        "name": name,
        "step": step,
        "digest": checkpoint_digest(model_uri),
    }
    hashed = {str(u): file_hash(str(u)) or {"uri": str(u), "sha256": "missing"} for u in metrics_uris}
    doc["evaluation"] = {"metrics": list(hashed.values()), "sha256": _combined(hashed), "tasks": tasks}
    doc["gaps"] = gaps
    for gap in gaps:
        log.warning("lineage gap: %s", gap)
    return doc


def annotations(doc: dict[str, Any], lineage_uri: str) -> dict[str, str]:
    """The short form for the InferenceService: the document's URI, the URIs and 16-hex-digit hashes."""
    out = {
        f"{PREFIX}lineage": lineage_uri,
        f"{PREFIX}model": doc["checkpoint"]["uri"],
        f"{PREFIX}checkpoint-digest": doc["checkpoint"]["digest"]["sha256"][:16],
        f"{PREFIX}metrics": ",".join(m["uri"] for m in doc["evaluation"]["metrics"]),
        f"{PREFIX}metrics-sha256": doc["evaluation"]["sha256"][:16],
    }
    if doc.get("run"):
        out[f"{PREFIX}run"] = doc["run"]["uri"]
    if doc.get("data"):
        out[f"{PREFIX}data-sha256"] = doc["data"]["sha256"][:16]
    if doc.get("recipe"):
        out[f"{PREFIX}recipe-sha256"] = doc["recipe"]["sha256"][:16]
    return out


def default_uri(model_uri: str) -> str:
    """Where a model's lineage document goes unless told otherwise: inside the model directory."""
    return _join(model_uri, "lineage.json")


def finish(doc: dict[str, Any], isvc: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Close the chain with the InferenceService revision now serving the model."""
    status = isvc.get("status") or {}
    predictor = (status.get("components") or {}).get("predictor") or {}
    meta = isvc["metadata"]
    doc["inference_service"] = {
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "generation": meta.get("generation"),
        "revision": predictor.get("latestReadyRevision"),
        "url": status.get("url"),
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    doc["previous"] = previous
    return doc


def baseline_tasks(isvc: dict[str, Any]) -> tuple[dict[str, dict[str, Any]] | None, str]:
    """The production model's per-task metrics, from the live InferenceService's annotations: its lineage
    document (which embeds them), else its metrics files. (None, why) when there is no record."""
    from audiomcq.promote.decision import load_metrics

    notes = (isvc.get("metadata") or {}).get("annotations") or {}
    problems = []
    if notes.get(f"{PREFIX}lineage"):
        uri = notes[f"{PREFIX}lineage"]
        try:
            doc = read_json(uri)
        except AudioMCQError as err:
            doc, problems = None, [str(err)]
        if doc and (doc.get("evaluation") or {}).get("tasks"):
            return doc["evaluation"]["tasks"], f"lineage {uri}"
        problems.append(f"{uri} holds no evaluation")
    if notes.get(f"{PREFIX}metrics"):
        try:
            return load_metrics(notes[f"{PREFIX}metrics"].split(",")), f"metrics {notes[f'{PREFIX}metrics']}"
        except AudioMCQError as err:
            problems.append(str(err))
    found = f" ({'; '.join(problems)})" if problems else ""
    return None, f"production's metrics are unknown: no readable {PREFIX}lineage or {PREFIX}metrics annotation{found}"
