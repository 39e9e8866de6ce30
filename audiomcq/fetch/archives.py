"""Plain-HTTP downloads (Zenodo, OpenSLR, GitHub raw, lab servers) with resume and published checksums, and safe
extraction of the archives they bring.

A download writes ``<name>.part`` and resumes it with an HTTP ``Range`` request after an interruption (a server
that ignores the range restarts it from zero); the finished file is checked against the checksum its publisher
lists (Zenodo's and OpenSLR's md5) and fetched again when it does not match. Files with no published checksum are
kept with the sha256 we measured and marked unverified in the manifest. Extraction refuses members that would land
outside the target (absolute paths, ``..``, links); ``.7z`` needs the ``7z``/``7za`` program or the ``py7zr``
package, and says so when neither is there.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.fetch import digests

log = logging.getLogger(__name__)
ATTEMPTS = 3
_CHUNK = 1 << 20
#: public base URLs, overridable per name (``--endpoint NAME=URL`` or ``AUDIOMCQ_ENDPOINT_<NAME>``) for mirrors
ENDPOINTS = {
    "zenodo": "https://zenodo.org",
    "openslr": "https://www.openslr.org",
    "github": "https://raw.githubusercontent.com",
    "mirg": "https://mirg.city.ac.uk",
}


def base_url(name: str, overrides: dict[str, str] | None = None) -> str:
    """The base URL for a named site: an explicit override, else ``AUDIOMCQ_ENDPOINT_<NAME>``, else the public one."""
    value = (overrides or {}).get(name) or os.environ.get(f"AUDIOMCQ_ENDPOINT_{name.upper()}") or ENDPOINTS.get(name)
    if not value:
        raise AudioMCQError(f"unknown endpoint {name!r}; known: {', '.join(ENDPOINTS)}")
    return value.rstrip("/")


@dataclass(frozen=True)
class Remote:
    """One file to download: where from, its name, and the checksum its publisher lists (None: none published)."""

    url: str
    name: str
    digest: str | None = None
    size: int | None = None


def download(remote: Remote, folder: Path) -> Path:
    """``remote`` into ``folder``, resumed from a partial download, verified; returns the finished file."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / remote.name
    if final.is_file() and digests.mismatch(final, remote.digest, remote.size) is None:
        return final
    part = folder / f"{remote.name}.part"
    problem = ""
    for attempt in range(1, ATTEMPTS + 1):
        _get(remote.url, part)
        problem = digests.mismatch(part, remote.digest, remote.size) or ""
        if not problem:
            os.replace(part, final)
            return final
        log.warning("%s: %s (try %d of %d); downloading it again", remote.url, problem, attempt, ATTEMPTS)
        part.unlink(missing_ok=True)
    raise AudioMCQError(f"{remote.url}: checksum still wrong after {ATTEMPTS} downloads ({problem})")


def _get(url: str, part: Path, retries: int = 4) -> None:
    """Append the rest of ``url`` to ``part`` (Range from its size), retrying broken connections."""
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                mode = "ab" if have and resp.status == 206 else "wb"  # 200: the server sent it all again
                with part.open(mode) as fh:
                    while chunk := resp.read(_CHUNK):
                        fh.write(chunk)
                expected = resp.headers.get("Content-Length")
            if expected is not None and part.stat().st_size < int(expected) + (have if mode == "ab" else 0):
                raise ConnectionError("connection closed before the end of the file")
            return
        except urllib.error.HTTPError as err:
            if err.code == 416 and have:  # the part is already whole
                return
            if err.code < 500 or attempt == retries:
                raise AudioMCQError(f"{url}: HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
            if attempt == retries:
                raise AudioMCQError(f"{url}: download failed after {retries + 1} tries: {err}") from None
        log.warning("%s: interrupted; resuming (try %d of %d)", url, attempt + 2, retries + 1)
        time.sleep(min(10.0, 0.5 * 2**attempt))


def get_json(url: str) -> Any:
    """A small JSON document (a record listing), with one clear line when it cannot be had."""
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as err:
        raise AudioMCQError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise AudioMCQError(f"{url}: {err}") from None


def zenodo_files(record: str, endpoints: dict[str, str] | None = None) -> list[Remote]:
    """Every file of a Zenodo record with the md5 Zenodo publishes for it (REST API ``/api/records/<id>``)."""
    base = base_url("zenodo", endpoints)
    data = get_json(f"{base}/api/records/{record}")
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        raise AudioMCQError(f"{base}/api/records/{record}: no file list in the answer")
    out = []
    for item in files:
        key = item.get("key") or item.get("filename")
        links = item.get("links") or {}
        url = links.get("content") or links.get("self") or f"{base}/records/{record}/files/{key}?download=1"
        checksum = str(item.get("checksum") or "")
        algo, _, value = checksum.partition(":")
        digest = f"{algo}:{value}" if algo in digests.ALGOS and value else None
        out.append(Remote(url, str(key), digest, item.get("size")))
    return out


def checksum_list(url: str, algo: str = "md5") -> dict[str, str]:
    """``{file name: digest}`` from a published ``md5sum``-style list (``<hex>  <name>`` per line)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            text = resp.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as err:
        raise AudioMCQError(f"{url}: cannot read the published checksums: {err}") from None
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[PurePosixPath(parts[-1].lstrip("*")).name] = f"{algo}:{parts[0].lower()}"
    return out


def extract(archive: Path, into: Path, strip: int = 0) -> list[Path]:
    """Unpack ``archive`` below ``into`` (dropping ``strip`` leading path components); returns the files."""
    into.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    if name.endswith(".7z"):
        return _extract_7z(archive, into, strip)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = [(m.filename, m) for m in zf.infolist() if not m.is_dir()]
            return [_write_member(into, n, strip, lambda m=m: zf.open(m), archive) for n, m in members if n]
    if tarfile.is_tarfile(archive):
        out = []
        with tarfile.open(archive) as tf:
            for member in tf:
                if member.issym() or member.islnk():
                    raise AudioMCQError(f"{archive}: member {member.name} is a link; refusing to extract")
                if member.isfile():
                    out.append(_write_member(into, member.name, strip, lambda m=member: tf.extractfile(m), archive))
        return [p for p in out if p is not None]
    raise AudioMCQError(f"{archive}: not a zip, tar or 7z archive")


def _safe_rel(name: str, strip: int, archive: Path) -> str | None:
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise AudioMCQError(f"{archive}: member {name!r} points outside the target; refusing to extract")
    parts = parts[strip:]
    return "/".join(parts) if parts else None


def _write_member(into: Path, name: str, strip: int, opener: Any, archive: Path) -> Path | None:
    rel = _safe_rel(name, strip, archive)
    if rel is None:
        return None
    target = into / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    with opener() as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)
    return target


def _extract_7z(archive: Path, into: Path, strip: int) -> list[Path]:
    scratch = into / f".{archive.name}.x"
    shutil.rmtree(scratch, ignore_errors=True)
    program = shutil.which("7z") or shutil.which("7za")
    if program:
        cmd = [program, "x", "-y", f"-o{scratch}", str(archive)]
        run = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if run.returncode != 0:
            raise AudioMCQError(f"{archive}: 7z failed: {(run.stderr or run.stdout).strip()[-300:]}")
    else:
        try:
            import py7zr
        except ImportError:
            raise AudioMCQError(
                f"{archive}: a .7z archive needs the 7z program (Debian package p7zip-full) or the py7zr package"
            ) from None
        with py7zr.SevenZipFile(archive) as sz:
            sz.extractall(scratch)
    out = []
    for path in sorted(p for p in scratch.rglob("*") if p.is_file()):
        rel = _safe_rel(path.relative_to(scratch).as_posix(), strip, archive)
        if rel:
            (into / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, into / rel)
            out.append(into / rel)
    shutil.rmtree(scratch, ignore_errors=True)
    return out


def concatenate(parts: list[Path], out: Path) -> Path:
    """Join a split archive (``x.zip.001``, ``x.zip.002``, …) into one file."""
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("wb") as dst:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, dst, _CHUNK)
    os.replace(tmp, out)
    return out
