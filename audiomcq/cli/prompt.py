"""``audiomcq prompt``: the exact prompt a model is given for a question."""

from __future__ import annotations

import argparse
from typing import Any


def add_prompt_commands(sub: Any) -> None:
    """Register ``prompt``."""
    p = sub.add_parser(
        "prompt",
        help="print the exact prompt a model is given for a question",
        description="Render the model-card system prompt and the R1-AQA user prompt (choices as a Python list).",
    )
    p.add_argument("question")
    p.add_argument("choices", nargs="+")
    p.add_argument("--messages", action="store_true", help="print the chat messages as JSON instead")
    p.set_defaults(func=cmd_prompt)


def cmd_prompt(args: argparse.Namespace) -> int:
    """Print the prompt."""
    import json

    from audiomcq.prompts import SYSTEM_PROMPT, build_messages, user_prompt

    if args.messages:
        print(json.dumps(build_messages(args.question, args.choices, audio="<audio>"), indent=2, ensure_ascii=False))
    else:
        print(f"system: {SYSTEM_PROMPT}\nuser: {user_prompt(args.question, args.choices)}")
    return 0
