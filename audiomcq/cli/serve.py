"""``audiomcq serve``: a checkpoint behind KServe's V1, V2 and OpenAI-compatible chat routes."""

from __future__ import annotations

import argparse
from typing import Any


def add_serve_commands(sub: Any) -> None:
    """Register ``serve``."""
    from audiomcq.serve import add_arguments as add_serve_arguments

    p = sub.add_parser("serve", help="serve a checkpoint with KServe (V1, V2 and OpenAI-compatible chat routes)")
    p.add_argument("--model-dir", "--model", dest="model_dir", required=True, help="model directory or s3:// prefix")
    p.add_argument("--name", default="audiomcq")
    p.add_argument("--http-port", type=int, default=8080)
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Block serving a model."""
    from audiomcq.serve import ServeConfig, serve

    serve(args.model_dir, args.name, args.http_port, ServeConfig.from_args(args))
    return 0
