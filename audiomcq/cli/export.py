"""``audiomcq export-vllm``: a trained model in the layout vLLM loads."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_export_commands(sub: Any) -> None:
    """Register ``export-vllm``."""
    p = sub.add_parser("export-vllm", help="write a trained model in the layout vLLM loads (Omni thinker -> full)")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_export_vllm)


def cmd_export_vllm(args: argparse.Namespace) -> int:
    """Export for vLLM."""
    from audiomcq.models.export import export_for_vllm

    print(f"exported -> {export_for_vllm(args.model, args.out)}")
    return 0
