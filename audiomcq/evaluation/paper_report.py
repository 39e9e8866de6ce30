"""``audiomcq report``: post-training runs in the paper's views.

- A Table-5-style table: one row per paradigm checkpoint (the selected one starred), columns for the selection
  set (all and AC-strong, when the set is labelled) and for every benchmark task evaluated with ``audiomcq eval``
  (accuracy and AC-strong subset), matched to rows by name.
- Fig.-4/5-style curves: selection-set accuracy against the training step per paradigm, GRPO continuing the
  step axis after SFT.

Written as Markdown with a PNG, and as one self-contained HTML page (the PNG inlined) for a KFP UI visualisation.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from audiomcq.formats import pct
from audiomcq.jsonio import load_json


def table(selections: dict[str, dict[str, Any]], evals: dict[str, dict[str, Any]]) -> tuple[list[str], list[list]]:
    """Header and rows of the Table-5 view."""
    tasks = sorted({t for e in evals.values() for t in e["tasks"]})
    header = ["checkpoint", "selection set", "selection AC-strong"]
    for t in tasks:
        header += [t, f"{t} AC-strong"]
    rows: dict[str, list] = {}
    for paradigm, sel in selections.items():
        chosen = sel["selected"]
        for c in sel["candidates"]:
            star = " ★" if (c["stage"], c["step"]) == (chosen["stage"], chosen["step"]) else ""
            name = f"{paradigm}/{c['stage']}-{c['step']}"
            rows[name] = [f"{name}{star}", c["accuracy"], c.get("ac_strong")] + [None] * (2 * len(tasks))
    for name, summary in evals.items():
        row = rows.setdefault(name, [name, None, None] + [None] * (2 * len(tasks)))
        for i, t in enumerate(tasks):
            audio = summary["tasks"].get(t, {}).get("modes", {}).get("audio", {})
            row[3 + 2 * i] = audio.get("total", {}).get("accuracy")
            row[4 + 2 * i] = audio.get("ac_strong", {}).get("accuracy")
    return header, list(rows.values())


def curves_png(selections: dict[str, dict[str, Any]]) -> bytes:
    """Accuracy vs step per paradigm (SFT solid circles, GRPO squares after the SFT steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for paradigm, sel in selections.items():
        sft = sel["curves"].get("sft", [])
        offset = max((step for step, _ in sft), default=0)
        grpo = [[offset + step, acc] for step, acc in sel["curves"].get("grpo", [])]
        points = sft + grpo
        line = ax.plot([p[0] for p in points], [p[1] for p in points], label=paradigm)[0]
        ax.scatter([p[0] for p in grpo], [p[1] for p in grpo], marker="s", color=line.get_color())
        ax.scatter([p[0] for p in sft], [p[1] for p in sft], marker="o", color=line.get_color())
    ax.set_xlabel("training step (GRPO continues after SFT)")
    ax.set_ylabel("selection-set accuracy (%)")
    ax.set_title("Accuracy vs step per paradigm")
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write(selections: dict[str, dict[str, Any]], evals: dict[str, dict[str, Any]], out_dir: str | Path) -> Path:
    """Write ``report.md``, ``curves.png`` and ``report.html`` under ``out_dir``; returns the Markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header, rows = table(selections, evals)
    cells = [[r[0], *(pct(x) for x in r[1:])] for r in rows]
    png = curves_png(selections)
    (out / "curves.png").write_bytes(png)
    why = [
        f"- **{p}**: selected {s['selected']['stage']} step {s['selected']['step']} — {s['why']} ({s['rule']})"
        for p, s in selections.items()
    ]
    md = ["# Post-training runs", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(c) + " |" for c in cells]
    md += ["", *why, "", "![accuracy vs step](curves.png)", ""]
    (out / "report.md").write_text("\n".join(md))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
    items = "".join(f"<li>{html.escape(w[2:].replace('**', ''))}</li>" for w in why)
    page = (
        f"<html><body><h1>Post-training runs</h1><table border='1'><tr>{head}</tr>{body}</table><ul>{items}</ul>"
        f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}'/></body></html>"
    )
    (out / "report.html").write_text(page)
    return out / "report.md"


def load_evals(dirs: dict[str, str | Path]) -> dict[str, dict[str, Any]]:
    """``audiomcq eval`` summaries by row name."""
    return {name: load_json(Path(d) / "metrics.json") for name, d in dirs.items()}
