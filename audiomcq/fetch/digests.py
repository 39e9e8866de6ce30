"""File digests as ``algo:hex`` strings, computed in one streaming pass.

Three algorithms cover every published checksum the fetchers check against: ``sha256`` (Git LFS objects on the
hub), ``gitsha1`` (the git blob id the hub reports for small, non-LFS files: sha1 over ``blob <size>\\0`` and the
content) and ``md5`` (what Zenodo and OpenSLR publish for their archives).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError

ALGOS = ("sha256", "gitsha1", "md5")
_CHUNK = 1 << 20


def _hasher(algo: str, size: int) -> Any:
    if algo == "sha256":
        return hashlib.sha256()
    if algo == "md5":
        return hashlib.md5(usedforsecurity=False)
    if algo == "gitsha1":
        h = hashlib.sha1(usedforsecurity=False)
        h.update(f"blob {size}\0".encode())
        return h
    raise AudioMCQError(f"unknown digest algorithm {algo!r}; known: {', '.join(ALGOS)}")


def split_digest(digest: str) -> tuple[str, str]:
    """``"sha256:ab…"`` -> ("sha256", "ab…"), rejecting unknown algorithms."""
    algo, sep, value = digest.partition(":")
    if not sep or algo not in ALGOS or not value:
        raise AudioMCQError(f"{digest!r} is not a digest of the form ALGO:HEX (ALGO one of {', '.join(ALGOS)})")
    return algo, value.lower()


def compute(path: str | Path, *algos: str) -> dict[str, str]:
    """``{algo: "algo:hex"}`` for every requested algorithm, reading the file once."""
    path = Path(path)
    size = path.stat().st_size
    hashers = {algo: _hasher(algo, size) for algo in algos or ("sha256",)}
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            for h in hashers.values():
                h.update(chunk)
    return {algo: f"{algo}:{h.hexdigest()}" for algo, h in hashers.items()}


def digest_bytes(data: bytes, algo: str = "sha256") -> str:
    """The digest string of an in-memory payload."""
    h = _hasher(algo, len(data))
    h.update(data)
    return f"{algo}:{h.hexdigest()}"


def mismatch(path: str | Path, expected: str | None, size: int | None = None) -> str | None:
    """Why ``path`` is not the expected file (wrong size or digest), or None when it is."""
    path = Path(path)
    if not path.is_file():
        return "file is missing"
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"size {actual_size} where {size} was published (truncated or wrong file)"
    if expected is None:
        return None
    algo, value = split_digest(expected)
    actual = compute(path, algo)[algo]
    if actual != f"{algo}:{value}":
        return f"{algo} {actual.partition(':')[2]} where {value} was published"
    return None
