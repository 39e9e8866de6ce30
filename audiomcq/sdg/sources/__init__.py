"""Source adapters for AudioMCQ-style generation: stream a caption dataset's items from its published metadata.

The paper wrote its 571k questions from the captions of seven public datasets; teams re-run that on their own copies.
:func:`read_source` finds a source's metadata files under a local root or an ``s3://`` prefix (from S3 it fetches
those files only, never audio) and streams :class:`SourceItem` records in a fixed order (sorted files, file order of
rows), with a :class:`Rejected` record, located by file and line, for every row it cannot use: one bad row neither
stops a run nor vanishes. The shared records and readers are in
:mod:`audiomcq.sdg.sources.formats`; each adapter's module (``sound``, ``music``, ``speech``, ``instruction``) says
what is confirmed about its formats and what is assumed.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from audiomcq.errors import AudioMCQError
from audiomcq.infra import storage
from audiomcq.sdg.sources.formats import Adapter, Rejected, SourceItem
from audiomcq.sdg.sources.instruction import CompAR
from audiomcq.sdg.sources.music import LPMusicCaps, MusicCaps
from audiomcq.sdg.sources.sound import TACOS, AudioCaps, Clotho
from audiomcq.sdg.sources.speech import SpeechCraft

__all__ = ["SOURCES", "Adapter", "Rejected", "SourceItem", "get_source", "read_source"]

log = logging.getLogger(__name__)

# the seven sources the paper wrote its questions from, in the order it lists them
ADAPTERS: tuple[type[Adapter], ...] = (Clotho, AudioCaps, MusicCaps, LPMusicCaps, SpeechCraft, TACOS, CompAR)
SOURCES: dict[str, type[Adapter]] = {adapter.name: adapter for adapter in ADAPTERS}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ALIASES = {_key(name): name for name in SOURCES} | {"lpmusiccapsmtt": "LP-MusicCaps", "comparinstruct": "CompA-R"}


def get_source(name: str) -> type[Adapter]:
    """The adapter for a source, by canonical name or an alias ("lp-musiccaps", "LPMusicCaps", "compa_r", ...)."""
    canonical = _ALIASES.get(_key(name))
    if canonical is None:
        raise AudioMCQError(f"unknown source {name!r}; the sources are {', '.join(SOURCES)}")
    return SOURCES[canonical]


def read_source(name: str, root: str | Path, splits: Sequence[str] | None = None) -> Iterator[SourceItem | Rejected]:
    """Stream a source's items from its metadata files under ``root`` (a local dir or an ``s3://`` prefix).

    ``splits`` picks file-level splits (all by default). An unknown source or split, or a missing metadata file, is
    an error here, before anything streams; ids that repeat within the source come out as Rejected."""
    adapter = get_source(name)()  # a fresh adapter per read: some keep per-read state
    root = str(root)
    files = _resolve(adapter, root, splits)
    return _stream(adapter, root, files)


def _resolve(adapter: Adapter, root: str, splits: Sequence[str] | None) -> list[tuple[str | None, str]]:
    """(split, path relative to root) for every metadata file to read, in reading order."""
    if isinstance(splits, str):
        splits = [splits]
    if splits:
        unknown = [split for split in splits if split not in adapter.splits]
        if unknown:
            known = ", ".join(adapter.splits) or "none (it is one set of files)"
            raise AudioMCQError(f"{adapter.name} has no split(s) {unknown}; its splits: {known}")
    wanted: list[str | None] = list(splits) if splits else (list(adapter.splits) or [None])
    match = _match_s3 if storage.is_s3(root) else _match_local
    files: list[tuple[str | None, str]] = []
    for split in wanted:
        pattern = adapter.pattern.format(split=split) if split else adapter.pattern
        found = match(root, pattern)
        if not found:
            raise AudioMCQError(f"{adapter.name}: expected {adapter.expected} at {root.rstrip('/')}/{pattern}")
        files.extend((split, rel) for rel in found)
    return files


def _match_local(root: str, pattern: str) -> list[str]:
    if not Path(root).is_dir():
        raise AudioMCQError(f"source root {root} is not a directory")
    folder, _, leaf = pattern.rpartition("/")
    where = Path(root) / folder
    names = [p.name for p in where.iterdir() if p.is_file()] if where.is_dir() else []
    return sorted(f"{folder}/{n}" if folder else n for n in names if fnmatch.fnmatchcase(n, leaf))


def _match_s3(root: str, pattern: str) -> list[str]:
    """Objects directly in the pattern's folder only: a source root may also hold hundreds of thousands of clips."""
    bucket, prefix = storage.split(root)
    folder, _, leaf = pattern.rpartition("/")
    listed = "/".join(part for part in (prefix.strip("/"), folder) if part)
    listed = f"{listed}/" if listed else ""
    try:
        names = [o.object_name[len(listed) :] for o in storage.client().list_objects(bucket, prefix=listed)]
    except Exception as err:  # the client's errors name bucket and key; add what we were looking for
        raise AudioMCQError(f"listing s3://{bucket}/{listed} failed: {err}") from err
    return sorted(f"{folder}/{n}" if folder else n for n in names if "/" not in n and fnmatch.fnmatchcase(n, leaf))


def _local_copy(root: str, rel: str) -> Path:
    """A local path for one metadata file: in place locally, streamed into the staging cache from S3."""
    if not storage.is_s3(root):
        return Path(root) / rel
    dest = storage.cache_dir(root) / "metadata" / PurePosixPath(rel).parent
    return storage.fetch(f"{root.rstrip('/')}/{rel}", dest)


def _stream(adapter: Adapter, root: str, files: list[tuple[str | None, str]]) -> Iterator[SourceItem | Rejected]:
    seen: set[str] = set()
    items = rejected = 0
    for split, rel in files:
        for record in adapter.parse(_local_copy(root, rel), rel, split):
            if isinstance(record, SourceItem) and record.id in seen:
                record = Rejected(adapter.name, record.meta.get("location", rel), f"duplicate id {record.id!r}")
            if isinstance(record, SourceItem):
                seen.add(record.id)
                items += 1
            else:
                rejected += 1
            yield record
    log.info(
        "%s: %d items, %d rejected rows from %d file(s) under %s", adapter.name, items, rejected, len(files), root
    )
