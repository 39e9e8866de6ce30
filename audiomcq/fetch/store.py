"""Where fetched files land: a local directory or an ``s3://`` prefix, with the same resumable contract.

Every file goes in through :meth:`Destination.put_file` together with the digest it was verified against, and
:meth:`Destination.has` answers whether a file with that size and digest is already there, so an interrupted fetch
skips what it finished, even from a fresh pod (in S3 the digest rides along as object metadata). A fetch starts by
removing the ``_COMPLETE`` marker and writes it back last: a reader never takes a half-fetched prefix for a whole
one. Large payloads are staged on local disk one file at a time (under ``AUDIOMCQ_STAGING`` for S3 targets), and
a staged file is removed as soon as it is uploaded.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.fetch import digests
from audiomcq.infra import storage

log = logging.getLogger(__name__)
STATE = ".fetch-state.json"  # local targets: digests of verified files, keyed by path, with size and mtime
DIGEST_META = "audiomcq-digest"  # S3 targets: the verified digest as user metadata


class Destination:
    """The target of one fetch; ``uri`` is a local path or an ``s3://bucket/prefix``."""

    def __init__(self, uri: str | Path) -> None:
        self.uri = str(uri).rstrip("/") if storage.is_s3(uri) else str(Path(uri))
        self.s3 = storage.is_s3(self.uri)
        if self.s3:
            self.bucket, prefix = storage.split(self.uri)
            self.prefix = prefix.strip("/")
            self.client = storage.client()
            self.staging = storage.cache_dir(self.uri) / "staging"
            self._state: dict[str, list[Any]] = {}
        else:
            self.root = Path(self.uri)
            self.root.mkdir(parents=True, exist_ok=True)
            self.staging = self.root / ".fetch-staging"
            self._state = self._load_state()
        self.staging.mkdir(parents=True, exist_ok=True)

    # --- naming ------------------------------------------------------------------------------------------------------
    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def child(self, rel: str) -> str:
        """The URI of a path under this destination (for manifests and reports)."""
        return f"{self.uri}/{rel}" if self.s3 else str(self.root / rel)

    # --- the marker ----------------------------------------------------------------------------------------------
    def begin(self) -> None:
        """Mark the destination unfinished until :meth:`complete` runs."""
        if self.s3:
            self.client.remove_object(self.bucket, self.key(storage.COMPLETE))
        else:
            (self.root / storage.COMPLETE).unlink(missing_ok=True)

    def complete(self, count: int) -> None:
        """Write the ``_COMPLETE`` marker, last, and clear the local staging area."""
        body = str(count).encode()
        if self.s3:
            self.client.put_object(self.bucket, self.key(storage.COMPLETE), io.BytesIO(body), len(body))
        else:
            (self.root / storage.COMPLETE).write_bytes(body)
        shutil.rmtree(self.staging, ignore_errors=True)
        log.info("%s: complete (%d files)", self.uri, count)

    def is_complete(self) -> bool:
        if self.s3:
            return storage.is_complete(self.uri)
        return (self.root / storage.COMPLETE).is_file()

    # --- files -------------------------------------------------------------------------------------------------------
    def has(self, rel: str, size: int | None, digest: str | None) -> bool:
        """Whether ``rel`` is already here with this size and digest (a corrupted or truncated copy is not)."""
        if self.s3:
            return self._s3_has(rel, size, digest)
        path = self.root / rel
        if not path.is_file() or (size is not None and path.stat().st_size != size):
            return False
        if digest is None:
            return True
        stat = path.stat()
        if self._state.get(rel) == [stat.st_size, stat.st_mtime_ns, digest]:
            return True
        if digests.mismatch(path, digest) is None:
            self._remember(rel, digest)
            return True
        log.warning("%s: present but does not match %s; fetching it again", path, digest)
        return False

    def _s3_has(self, rel: str, size: int | None, digest: str | None) -> bool:
        from minio.error import S3Error

        try:
            stat = self.client.stat_object(self.bucket, self.key(rel))
        except S3Error:
            return False
        if size is not None and stat.size != size:
            return False
        if digest is None:
            return True
        meta = {k.lower(): v for k, v in (stat.metadata or {}).items()}
        return meta.get(f"x-amz-meta-{DIGEST_META}") == digest

    def put_file(self, local: Path, rel: str, digest: str | None = None, keep: bool = False) -> Path | None:
        """Move a verified file into place (local) or upload it (S3); returns where a local copy remains, which
        for S3 is the staged file only with ``keep`` (it is removed otherwise)."""
        if self.s3:
            metadata = {DIGEST_META: digest} if digest else None
            try:
                self.client.fput_object(self.bucket, self.key(rel), str(local), metadata=metadata)
            except Exception as err:  # the client's errors name bucket and key; add the file
                raise AudioMCQError(f"{self.child(rel)}: upload failed: {err}") from err
            if keep:
                return local
            local.unlink(missing_ok=True)
            return None
        target = self.root / rel
        if local.resolve() != target.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(local, target)
        if digest:
            self._remember(rel, digest)
        return target

    def local_copy(self, rel: str) -> Path:
        """A local path holding ``rel``: the file itself locally, a download into the staging area from S3."""
        if not self.s3:
            return self.root / rel
        target = self.staging / "copies" / rel
        if not target.is_file():
            try:
                self.client.fget_object(self.bucket, self.key(rel), str(target))
            except Exception as err:  # the client's errors name bucket and key; add the file
                raise AudioMCQError(f"{self.child(rel)}: download failed: {err}") from err
        return target

    def put_json(self, rel: str, obj: Any) -> None:
        """Write a small JSON document (manifest, report) into the destination."""
        data = (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()
        if self.s3:
            self.client.put_object(
                self.bucket, self.key(rel), io.BytesIO(data), len(data), content_type="application/json"
            )
            return
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def listing(self, under: str = "") -> dict[str, int]:
        """``{relative path: size}`` of every file under ``under`` (relative to the destination)."""
        if self.s3:
            prefix = self.key(under.strip("/")) + "/" if under else (f"{self.prefix}/" if self.prefix else "")
            base = f"{self.prefix}/" if self.prefix else ""
            objects = self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
            return {o.object_name[len(base) :]: o.size for o in objects}
        root = self.root / under if under else self.root
        if not root.is_dir():
            return {}
        skip = {self.staging.name, STATE}
        return {
            p.relative_to(self.root).as_posix(): p.stat().st_size
            for p in root.rglob("*")
            if p.is_file() and p.relative_to(self.root).parts[0] not in skip
        }

    # --- local state -------------------------------------------------------------------------------------------------
    def _load_state(self) -> dict[str, list[Any]]:
        path = self.root / STATE
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _remember(self, rel: str, digest: str) -> None:
        stat = (self.root / rel).stat()
        self._state[rel] = [stat.st_size, stat.st_mtime_ns, digest]
        tmp = self.root / f".{STATE}.tmp"
        tmp.write_text(json.dumps(self._state))
        os.replace(tmp, self.root / STATE)
