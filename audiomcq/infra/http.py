"""JSON over HTTP for the OpenAI-compatible clients (inference engine, dataset-generation LLM): POST with retries.

Connection errors, timeouts, 408/429 and 5xx are retried with exponential backoff (a ``Retry-After`` header is
honoured, capped); any other 4xx fails at once with the server's message. Headers are never logged (they carry
the key).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class HTTPFailure(AudioMCQError):
    """A request that failed for good; ``status`` is the last HTTP status (None: no response)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def json_headers(api_key_env: str | None) -> dict[str, str]:
    """Request headers, with ``Authorization`` from the variable named ``api_key_env`` (its value never logged)."""
    import os

    headers = {"Content-Type": "application/json"}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise AudioMCQError(f"environment variable {api_key_env} (the endpoint's key) is not set")
        headers["Authorization"] = f"Bearer {key}"
    return headers


def post_json(
    url: str, body: dict[str, Any], headers: dict[str, str], *, timeout: float, retries: int, max_wait: float = 30.0
) -> Any:
    """POST ``body`` and return the decoded JSON reply, retrying what is worth retrying."""
    data = json.dumps(body).encode()
    for attempt in range(retries + 1):
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        wait = min(max_wait, 0.5 * 2**attempt)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            if err.code not in RETRY_STATUS or attempt == retries:
                raise HTTPFailure(f"{url}: HTTP {err.code}: {detail}", err.code) from err
            after = err.headers.get("Retry-After") if err.headers else None
            if after and after.replace(".", "", 1).isdigit():
                wait = min(max_wait, float(after))
        except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
            if attempt == retries:
                raise HTTPFailure(f"{url}: no answer after {attempt + 1} tries: {err}", None) from err
        log.warning("%s: retrying in %.1f s (try %d of %d)", url, wait, attempt + 2, retries + 1)
        time.sleep(wait)
    raise AssertionError("unreachable")
