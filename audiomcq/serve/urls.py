"""The ``audio_url`` allow-list: prefixes parsed once at startup and matched by parts, never as raw strings.

A raw string prefix ``https://host`` would admit ``https://host.evil.com/x`` and ``s3://bucket`` would admit
``s3://bucket-private/...``, so a URL is allowed only when its scheme, host (or bucket) and port equal a prefix's and
its path continues the prefix's path at a segment boundary (the prefix path is read as ending with ``/``, so
``.../audio`` allows ``.../audio/x.wav`` but not ``.../audio-private/x.wav``). Paths are compared as written;
``.``/``..`` segments are refused separately (after percent-decoding) so nothing can climb out of a prefix.
Stdlib only: ``ServeConfig`` parses its prefixes with this and is imported by the CLI.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

SCHEMES = ("s3", "http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}


def dot_segments(path: str) -> bool:
    """Whether a URL path has ``.`` or ``..`` segments once percent-decoded (``%2e%2e``; ``\\`` counts as ``/``)."""
    segments = urllib.parse.unquote(path).replace("\\", "/").split("/")
    return bool({".", ".."} & set(segments))


def redact(url: str) -> str:
    """The URL without its query and fragment, for logs: a pre-signed URL's signature is in its query."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _port(parts: urllib.parse.SplitResult) -> int | None:
    return parts.port or DEFAULT_PORTS.get(parts.scheme)  # .port raises ValueError on a bad port


@dataclass(frozen=True)
class UrlPrefix:
    """One allowed prefix: exact scheme, host and port, and a path ending with ``/``."""

    scheme: str
    host: str
    port: int | None
    path: str

    @classmethod
    def parse(cls, text: str) -> UrlPrefix:
        """The prefix ``text`` names, or a ValueError saying why it cannot be matched safely."""
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in SCHEMES:
            raise ValueError(f"the scheme must be one of {list(SCHEMES)}")
        if not parts.hostname:
            raise ValueError("it has no host (or bucket)")
        if "@" in parts.netloc:
            raise ValueError("it has credentials")
        if parts.query or parts.fragment or text.endswith(("?", "#")):
            raise ValueError("it has a ?query or #fragment")
        if dot_segments(parts.path):
            raise ValueError("it has . or .. path segments")
        port = _port(parts)
        if parts.scheme == "s3" and port is not None:
            raise ValueError("an s3:// prefix names a bucket, not a port")
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        return cls(parts.scheme, parts.hostname, port, path if path.startswith("/") else "/" + path)

    def allows(self, parts: urllib.parse.SplitResult) -> bool:
        """Whether a split URL is under this prefix (``parts.port`` may raise ValueError on a bad port)."""
        return (
            parts.scheme == self.scheme
            and parts.hostname == self.host
            and _port(parts) == self.port
            and parts.path.startswith(self.path)
        )
