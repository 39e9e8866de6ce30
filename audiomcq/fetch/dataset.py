"""``audiomcq fetch dataset audiomcq``: the AudioMCQ release, held to the record contract, plus its source audio.

Layout at the destination (a directory or ``s3://`` prefix)::

    release/…                     the hub dataset repo's files, verbatim and verified (datasets/*.jsonl, README.md)
    records/<file>.jsonl          the valid records of each release file, in the project's record form
    quarantine/<file>.jsonl       every record that breaks the contract, with its reasons (never silently dropped)
    audio/<Source>/…              the audio this command could fetch (see audiomcq.fetch.sources)
    audio-report.json             per source: records, audio present, missing, examples, what to provide and where
    fetch-manifest.json           repo, commit, files and digests, validation counts, source downloads
    _COMPLETE                     written last

``records/`` + ``audio/`` are what ``audiomcq filter``/``train`` take as data and audio root.

    audiomcq fetch dataset audiomcq --to s3://audiomcq/data/audiomcq
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from audiomcq import __version__
from audiomcq.data.io import RecordReader
from audiomcq.errors import AudioMCQError
from audiomcq.fetch import hub
from audiomcq.fetch.place import place_item
from audiomcq.fetch.sources import SOURCES, Source, get_sources
from audiomcq.fetch.store import Destination
from audiomcq.jsonio import write_jsonl

log = logging.getLogger(__name__)
DATASETS = {"audiomcq": "inclusionAI/AudioMCQ"}
RELEASE_FILES = ("datasets/*", "README.md")
RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")
AUDIO = "audio"
EXAMPLES = 5


def fetch_dataset(
    name: str,
    to: str | Path,
    *,
    revision: str | None = None,
    token_env: str | None = "HF_TOKEN",
    endpoint: str | None = None,
    sources: str | list[str] | None = "auto",
    endpoints: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Fetch dataset ``name`` (``audiomcq``) into ``to``; returns the manifest.

    ``sources``: whose audio to fetch (``auto``: every automatable source; ``none``; or names such as
    ``Clotho,SpeechCraft``). ``endpoints`` overrides the download sites by name (``zenodo``, ``openslr``, ``mirg``)."""
    if name.lower() not in DATASETS:
        raise AudioMCQError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    repo = hub.resolve(
        DATASETS[name.lower()], revision=revision, repo_type="dataset", endpoint=endpoint, token_env=token_env
    )
    files = repo.select(RELEASE_FILES)
    if not any(f.path.endswith(RECORD_SUFFIXES) for f in files):
        raise AudioMCQError(f"{repo.endpoint}/datasets/{repo.repo_id}@{repo.commit}: no record files under datasets/")
    dest = Destination(to)
    dest.begin()
    entries = hub.fetch_files(repo, sorted(files, key=lambda f: f.path), dest, under="release", keep=True)
    validation, audio_paths = _validate(entries, dest)
    wanted = [] if sources in ("none", ["none"], "") else get_sources(sources)
    downloads = []
    for source in wanted:
        if source.automatic:
            for item in source.items(endpoints or {}):  # type: ignore[misc]
                downloads.append({"source": source.name, **place_item(item, dest, AUDIO)})
    report = audio_report(audio_paths, dest.listing(AUDIO), fetched={s.name for s in wanted if s.automatic})
    dest.put_json("audio-report.json", report)
    manifest = {
        "kind": "dataset",
        "name": name.lower(),
        **repo.describe(),
        "files": [{k: v for k, v in e.items() if k not in ("local", "source_path")} for e in entries],
        "validation": validation,
        "audio_downloads": downloads,
        "audio_report": report,
        "audio_root": dest.child(AUDIO),
        "records_root": dest.child("records"),
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tool": f"audiomcq {__version__}",
    }
    dest.put_json("fetch-manifest.json", manifest)
    dest.complete(len(entries))
    return manifest


def _validate(entries: list[dict[str, Any]], dest: Destination) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Each release record file through the contract: valid records to ``records/``, bad ones to ``quarantine/``."""
    results, audio_paths = [], []
    for entry in entries:
        rel = PurePosixPath(entry["source_path"])
        if rel.parts[0] != "datasets" or not rel.name.endswith(RECORD_SUFFIXES):
            continue
        stem = rel.relative_to("datasets").with_suffix("").as_posix()
        local = Path(entry["local"])
        out, quarantine = dest.staging / "records" / f"{stem}.jsonl", dest.staging / "quarantine" / f"{stem}.jsonl"
        reader = RecordReader(local, strict=False, quarantine=quarantine)
        rows = []
        for record in reader:
            rows.append(record.to_dict())
            audio_paths.append((record.source_dataset or "(none)", record.audio_path or ""))
        write_jsonl(out, rows)
        dest.put_file(out, f"records/{stem}.jsonl")
        summary = reader.report.to_dict()
        summary["source"] = entry["path"]
        if reader.report.quarantined:
            dest.put_file(quarantine, f"quarantine/{stem}.jsonl")
            summary["quarantine_path"] = dest.child(f"quarantine/{stem}.jsonl")
        log.info("%s", reader.report.summary())
        results.append(summary)
    return results, audio_paths


def audio_report(audio_paths: list[tuple[str, str]], listing: dict[str, int], fetched: set[str]) -> dict[str, Any]:
    """Per source: records, audio present or missing under the audio root, and what the user must provide."""
    present: Counter[str] = Counter()
    total: Counter[str] = Counter()
    missing: dict[str, list[str]] = defaultdict(list)
    have = {path for path, size in listing.items() if size > 0}
    for source, path in audio_paths:
        total[source] += 1
        rel = f"{AUDIO}/{PurePosixPath(path.removeprefix('./')).as_posix()}" if path else ""
        if rel and rel in have:
            present[source] += 1
        elif len(missing[source]) < EXAMPLES:
            missing[source].append(path or "(record has no audio_path)")
    by_source = {}
    for source in sorted(total):
        info: Source | None = SOURCES.get(source)
        row: dict[str, Any] = {"records": total[source], "present": present[source]}
        row.update(missing=total[source] - present[source], missing_examples=missing[source])
        if info is not None:
            row["published"] = info.published
            row["automatic"] = info.automatic
            row["fetched_now"] = source in fetched
            if not info.automatic:
                row["provide"] = f"{info.provide}, below the audio root ({AUDIO}/)"
        by_source[source] = row
    return {
        "records": sum(total.values()),
        "present": sum(present.values()),
        "missing": sum(total.values()) - sum(present.values()),
        "by_source": by_source,
    }
