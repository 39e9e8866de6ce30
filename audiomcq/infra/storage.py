"""``s3://`` URIs for stage inputs and outputs, through the MinIO client (any S3-compatible store).

The endpoint comes from ``AUDIOMCQ_S3_ENDPOINT`` (``host:port`` or a URL), TLS from ``AUDIOMCQ_S3_SECURE`` (default
on), the region from ``AUDIOMCQ_S3_REGION``; credentials from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
which a Kubernetes Secret injects by name. No value is ever logged. Inputs are streamed to local disk; an output
directory is uploaded file by file, and a ``_COMPLETE`` marker goes up last, so a reader never mistakes a
half-uploaded result for a finished one. Only plain S3 calls are used (no MinIO-only APIs). A store that cannot be
reached, or that refuses a call, is one error naming the URI and the reason, never a client traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)
COMPLETE = "_COMPLETE"
TRAIN_COMPLETE = "COMPLETE"  # a training checkpoint's own marker (audiomcq.train.common)


def is_s3(uri: str | Path) -> bool:
    return str(uri).startswith("s3://")


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise AudioMCQError(f"{uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


def client() -> Any:
    """A MinIO client configured from the environment."""
    from minio import Minio

    endpoint = os.environ.get("AUDIOMCQ_S3_ENDPOINT")
    if not endpoint:
        raise AudioMCQError("AUDIOMCQ_S3_ENDPOINT is not set (host:port of the S3 store)")
    parsed = urlparse(endpoint if "://" in endpoint else f"//{endpoint}")
    secure = os.environ.get("AUDIOMCQ_S3_SECURE", "true").lower() not in ("0", "false", "no")
    if parsed.scheme:
        secure = parsed.scheme == "https"
    return Minio(
        parsed.netloc,
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        region=os.environ.get("AUDIOMCQ_S3_REGION"),
        secure=secure,
    )


@contextlib.contextmanager
def reaching(uri: str, what: str) -> Iterator[None]:
    """Turn the client's failures inside the block into one line naming ``uri``: an endpoint that cannot be reached
    (the HTTP client's retries ran out) or the store's refusal (its error code and message)."""
    from minio.error import MinioException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except HTTPError as err:
        reason = " ".join(str(getattr(err, "reason", None) or err).split())
        endpoint = os.environ.get("AUDIOMCQ_S3_ENDPOINT")
        raise AudioMCQError(f"{uri}: {what} failed: the S3 endpoint {endpoint} cannot be reached ({reason})") from None
    except MinioException as err:
        raise AudioMCQError(f"{uri}: {what} failed: {' '.join(str(err).split())}") from None


def fetch(uri: str | Path, dest_dir: str | Path) -> Path:
    """A local path for ``uri``: local paths as they are; an ``s3://`` object streamed to ``dest_dir``."""
    if not is_s3(uri):
        return Path(uri)
    bucket, key = split(str(uri))
    dest = Path(dest_dir) / Path(key).name
    dest.parent.mkdir(parents=True, exist_ok=True)
    with reaching(str(uri), "download"):
        client().fget_object(bucket, key, str(dest))  # writes a temporary part file, renamed when complete
    log.info("fetched %s -> %s", uri, dest)
    return dest


def publish(local_dir: str | Path, uri: str, exclude: tuple[str, ...] = ()) -> int:
    """Upload every file under ``local_dir`` to the ``uri`` prefix, then the ``_COMPLETE`` marker; returns the count.

    ``exclude`` names top-level entries to leave out (scratch directories). A training checkpoint's own
    ``COMPLETE`` file goes up after everything else in its folder, so a copy interrupted mid-upload never looks
    complete to a reader of the plain files either."""
    import io

    bucket, prefix = split(uri)
    prefix = prefix.rstrip("/")
    s3 = client()
    root = Path(local_dir)
    count = 0
    marker = f"{prefix}/{COMPLETE}" if prefix else COMPLETE
    files = sorted((p for p in root.rglob("*") if p.is_file()), key=lambda p: (p.name == TRAIN_COMPLETE, str(p)))
    with reaching(uri, "upload"):
        s3.remove_object(bucket, marker)  # a re-publish is incomplete until its own marker lands (no-op when absent)
        for path in files:
            rel = path.relative_to(root)
            if rel.parts[0] in exclude or path.name.endswith(".tmp"):
                continue
            s3.fput_object(bucket, f"{prefix}/{rel.as_posix()}" if prefix else rel.as_posix(), str(path))
            count += 1
        s3.put_object(bucket, marker, io.BytesIO(str(count).encode()), len(str(count)))
    log.info("published %d files from %s to %s", count, root, uri)
    return count


def run_prefix(publish: str, run_id: str) -> str:
    """Where one pipeline run keeps its S3 outputs: ``<publish>/<run id>`` ("" without an ``s3://`` prefix).
    Retries of a step see the same run id, so they resume; another run never reuses this run's checkpoints."""
    return f"{publish.rstrip('/')}/{run_id}" if is_s3(publish) and run_id else (publish if is_s3(publish) else "")


def publish_under(local_dir: str | Path, prefix: str, *where: str, exclude: tuple[str, ...] = ()) -> str:
    """Publish a finished stage output to ``prefix/where…`` when ``prefix`` is an ``s3://`` URI; returns that URI,
    or "" when nothing is published (no prefix: the output stays a local artifact)."""
    if not is_s3(prefix):
        return ""
    uri = "/".join([prefix.rstrip("/"), *where])
    publish(local_dir, uri, exclude=exclude)
    return uri


def is_complete(uri: str) -> bool:
    """Whether an output prefix carries its ``_COMPLETE`` marker."""
    from minio.error import S3Error

    bucket, prefix = split(uri)
    with reaching(uri, "checking for the completion marker"):
        try:
            client().stat_object(bucket, f"{prefix.rstrip('/')}/{COMPLETE}")
        except S3Error:
            return False
    return True


def fetch_dir(uri: str, dest_dir: str | Path, require_complete: bool = True, skip: str = "") -> Path:
    """Download every object under the ``uri`` prefix into ``dest_dir`` (the marker included); with
    ``require_complete``, a prefix without its ``_COMPLETE`` marker is an error rather than a partial copy. Files
    already there with the object's size are kept, so an interrupted sync of an audio root resumes. ``skip``: a
    glob on the relative path's folders (e.g. ``checkpoint-*``) whose files are left in S3."""
    from fnmatch import fnmatch

    if require_complete and not is_complete(uri):
        raise AudioMCQError(f"{uri}: no {COMPLETE} marker; the upload is unfinished or the prefix is wrong")
    bucket, prefix = split(uri)
    prefix = prefix.rstrip("/") + "/"
    s3, dest, count = client(), Path(dest_dir), 0
    with reaching(uri, "download"):
        for obj in s3.list_objects(bucket, prefix=prefix, recursive=True):
            rel = obj.object_name[len(prefix) :]
            if skip and any(fnmatch(part, skip) for part in rel.split("/")[:-1]):
                continue
            target = dest / rel
            if not (target.is_file() and target.stat().st_size == obj.size):
                s3.fget_object(bucket, obj.object_name, str(target))  # each file renamed into place when complete
                count += 1
    log.info("fetched %d files from %s -> %s", count, uri, dest)
    return dest


def cache_dir(uri: str) -> Path:
    """The local directory that stands in for ``uri`` on this machine: under ``AUDIOMCQ_STAGING`` (default
    ``~/.cache/audiomcq/runs``), one per URI."""
    root = Path(os.environ.get("AUDIOMCQ_STAGING") or Path.home() / ".cache" / "audiomcq" / "runs")
    return root / hashlib.sha256(uri.encode()).hexdigest()[:16]


def local_model(model_dir: str | Path) -> str:
    """A local model directory: ``s3://`` models are downloaded once (complete uploads only) and reused."""
    if not is_s3(model_dir):
        return str(model_dir)
    local = cache_dir(str(model_dir)) / "model"
    if not (local / COMPLETE).is_file():
        fetch_dir(str(model_dir), local)
    return str(local)


def local_tree(root: str | Path) -> Path:
    """A local copy of a directory tree such as an audio root (synced incrementally; no marker needed)."""
    if not is_s3(root):
        return Path(root)
    return fetch_dir(str(root), cache_dir(str(root)) / "tree", require_complete=False)


def subprefixes(uri: str) -> list[str]:
    """The immediate "directories" under an ``s3://`` prefix, as full URIs."""
    bucket, prefix = split(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    with reaching(uri, "listing"):
        objects = list(client().list_objects(bucket, prefix=prefix, recursive=False))
    return [f"s3://{bucket}/{o.object_name.rstrip('/')}" for o in objects if o.is_dir]
