"""Put downloaded archives and files into a destination, once: unpack, place each member, then record the item.

An item counts as done only when its record (``_fetch/<folder>/<name>.json``) is in the destination; the record
is written after every member is in place, so an interrupted unpack is redone (members already there with the
same size are skipped) and a finished one is never downloaded again.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audiomcq.fetch import archives, digests
from audiomcq.fetch.sources import Item, member_kept
from audiomcq.fetch.store import Destination

log = logging.getLogger(__name__)


def done_record(under: str, name: str) -> str:
    return f"_fetch/{under.strip('/')}/{name}.json" if under else f"_fetch/{name}.json"


def is_done(dest: Destination, under: str, name: str) -> bool:
    return dest.has(done_record(under, name), None, None)


def unpack_into(
    archive: Path, dest: Destination, under: str, strip: int = 0, keep: Callable[[str], bool] | None = None
) -> int:
    """Unpack ``archive`` and place its members below ``under``; returns how many files were placed."""
    scratch = dest.staging / "unpack" / archive.name
    shutil.rmtree(scratch, ignore_errors=True)
    members = archives.extract(archive, scratch, strip)
    placed = 0
    for member in members:
        rel_member = member.relative_to(scratch).as_posix()
        if keep is not None and not keep(rel_member):
            continue
        rel = f"{under.strip('/')}/{rel_member}" if under else rel_member
        if not dest.has(rel, member.stat().st_size, None):
            dest.put_file(member, rel)
        placed += 1
    shutil.rmtree(scratch, ignore_errors=True)
    log.info("%s: %d files placed under %s", archive.name, placed, dest.child(under))
    return placed


def place_item(item: Item, dest: Destination, root: str) -> dict[str, Any]:
    """Download, verify and place one source item below ``root/item.into``; returns its manifest entry."""
    under = f"{root.strip('/')}/{item.into}" if root else item.into
    if is_done(dest, under, item.name):
        log.info("%s: already placed under %s", item.name, dest.child(under))
        return {"name": item.name, "into": under, "status": "already there"}
    folder = dest.staging / "downloads"
    files = [archives.download(remote, folder) for remote in item.remotes]
    entry: dict[str, Any] = {
        "name": item.name,
        "into": under,
        "urls": [r.url for r in item.remotes],
        "published_digests": [r.digest for r in item.remotes],
        "verified": all(r.digest for r in item.remotes),
        "sha256": [digests.compute(f, "sha256")["sha256"] for f in files],
    }
    if item.kind == "file":
        dest.put_file(files[0], f"{under}/{item.name}", item.remotes[0].digest)
        entry["files"] = 1
    else:
        archive = files[0] if item.kind == "archive" else archives.concatenate(files, folder / item.name)
        entry["files"] = unpack_into(archive, dest, under, item.strip, lambda rel: member_kept(item, rel))
        for path in {archive, *files}:
            path.unlink(missing_ok=True)
    entry["status"] = "placed"
    dest.put_json(done_record(under, item.name), entry)
    return entry
