"""``audiomcq query``: one audio question to a served model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_query_commands(sub: Any) -> None:
    """Register ``query``."""
    p = sub.add_parser("query", help="ask a served model one audio question")
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--name", default="audiomcq")
    p.add_argument("--audio", required=True, type=Path)
    p.add_argument("--question", required=True)
    p.add_argument("--choices", required=True, nargs="+")
    p.set_defaults(func=cmd_query)


def cmd_query(args: argparse.Namespace) -> int:
    """POST one question to a served model and print the answer."""
    import urllib.request

    from audiomcq.serve import request_body

    body = json.dumps(request_body(args.audio.read_bytes(), args.question, args.choices)).encode()
    url = f"{args.url.rstrip('/')}/v1/models/{args.name}:predict"
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        prediction = json.load(resp)["predictions"][0]
    print(f"answer: {prediction['answer']}")
    return 0
