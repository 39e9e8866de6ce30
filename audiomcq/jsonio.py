"""Reading and writing the JSON shapes the benchmarks and stages use, with locations for every error.

Benchmarks ship as a JSON list (MMAU), JSONL (MMAR, MMSU, our records) or a folder of one-JSON-per-item files
(DCASE 2025 Task 5). Every reader yields ``(line_or_index, object)`` so a problem can be reported as
``file:line: reason``. Writers are atomic: a crash never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from audiomcq.errors import AudioMCQError, RecordError


@dataclass(frozen=True)
class BadLine:
    """A JSONL line that does not parse, handed back in lenient mode so the caller can quarantine it."""

    text: str
    reason: str


def json_problem(exc: json.JSONDecodeError) -> str:
    """Why a text is not JSON, with its column: "Unterminated string starting at column 2" (the decoder's own
    message already ends in "at" for some errors)."""
    return f"not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"


def iter_jsonl(path: str | Path, lenient: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-blank line.

    A line that is not JSON raises RecordError, or with ``lenient`` comes back as a BadLine.
    """
    path = Path(path)
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line.strip())
            except json.JSONDecodeError as exc:
                reason = json_problem(exc)
                if not lenient:
                    raise RecordError(str(path), lineno, reason) from None
                yield lineno, BadLine(line.rstrip("\n"), reason)


def iter_json_items(path: str | Path, lenient: bool = False) -> Iterator[tuple[int, Any]]:
    """Yield ``(location, object)`` from a JSON list file, a JSONL file or a folder of ``*.json`` files.

    For a JSON list the location is the 1-based item index; for JSONL the line number; for a folder the
    1-based position in sorted file order (the file name is reported in errors by the caller's record id).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        if not files:
            raise AudioMCQError(f"{path}: folder holds no *.json files")
        for index, file in enumerate(files, start=1):
            yield index, load_json(file)
        return
    if not path.exists():
        raise AudioMCQError(f"{path}: no such file")
    if is_json_list(path):
        data = load_json(path)
        if not isinstance(data, list):
            raise AudioMCQError(f"{path}: expected a JSON list of items, found {type(data).__name__}")
        yield from enumerate(data, start=1)
        return
    yield from iter_jsonl(path, lenient)


def load_json(path: str | Path) -> Any:
    """Parse one JSON document, naming the file and position on failure."""
    path = Path(path)
    try:
        with _open_text(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise RecordError(str(path), exc.lineno, json_problem(exc)) from None


def json_line(obj: Any) -> str:
    """One JSONL line's text (UTF-8 kept, no newline)."""
    return json.dumps(obj, ensure_ascii=False)


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """Atomically write rows as JSONL (UTF-8, non-ASCII kept); returns the number written."""
    count = 0
    with atomic_writer(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False))
            fh.write("\n")
            count += 1
    return count


def write_json(path: str | Path, obj: Any, indent: int = 2) -> None:
    """Atomically write one JSON document."""
    with atomic_writer(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=indent)
        fh.write("\n")


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[TextIO]:
    """Write to a temporary file beside ``path`` and rename it into place only if the block succeeds."""
    path = Path(path)
    if path.is_dir():  # checked first: the rename's error would name the temporary file, not this path
        raise AudioMCQError(f"{path}: is a folder, expected a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _open_text(path: Path) -> TextIO:
    try:
        return _Utf8Reader(path)
    except FileNotFoundError:
        raise AudioMCQError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise AudioMCQError(f"{path}: is a folder, expected a file") from None


class _Utf8Reader(io.TextIOWrapper):
    """A UTF-8 text file whose decoding errors name the file."""

    def __init__(self, path: Path) -> None:
        super().__init__(open(path, "rb"), encoding="utf-8")  # noqa: SIM115 - closed by the wrapper
        self._path = path

    def read(self, size: int | None = -1) -> str:
        try:
            return super().read(size)
        except UnicodeDecodeError as exc:
            raise AudioMCQError(f"{self._path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None

    def __next__(self) -> str:
        try:
            return super().__next__()
        except UnicodeDecodeError as exc:
            raise AudioMCQError(f"{self._path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def is_json_list(path: Path) -> bool:
    """A file whose first non-space character is ``[`` is a JSON list, otherwise JSONL (or one JSON object)."""
    with _open_text(path) as fh:
        while True:
            chunk = fh.read(4096)
            if not chunk:
                return False
            stripped = chunk.lstrip()
            if stripped:
                return stripped.startswith("[")
