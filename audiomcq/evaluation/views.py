"""Markdown and HTML views of stage results: what the KFP UI shows for a task's ``Markdown``/``HTML`` outputs, so
a user reads the outcome of a filter, generation or selection step without downloading its artifacts."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from audiomcq.formats import pct


def _write(path: str | Path, text: str) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    return text


def filter_markdown(stats: dict[str, Any], path: str | Path) -> str:
    """Label counts, each model's silent accuracy per probe, and (with ground truth) each rule's agreement."""
    counts = f"**{stats['weak']} weak / {stats['strong']} strong** ({pct(stats['weak_pct'])}% weak; {stats['rule']})"
    lines = [
        f"## Audio-contribution filtering: {stats['count']} questions",
        "",
        f"{counts}. Audio missing: {stats['audio_missing']}.",
        "",
        "| model | probe | right without listening (%) |",
        "|---|---|---|",
    ]
    for model, probes in stats["models"].items():
        for probe, groups in probes.items():
            lines.append(f"| {model} | {probe} | {pct(groups.get('all'))} |")
    truth = stats.get("ground_truth") or {}
    if truth:
        lines += ["", "| rule | agreement with ground truth (%) | weak precision | weak recall |", "|---|---|---|---|"]
        lines += [
            f"| {rule} | {pct(q['agreement'])} | {pct(q['weak_precision'])} | {pct(q['weak_recall'])} |"
            for rule, q in truth.items()
        ]
    paper = stats.get("paper")
    if paper:
        lines += ["", f"Paper: {paper['overall_weak']['paper']}% weak overall; here {paper['overall_weak']['ours']}%."]
    return _write(path, "\n".join(lines) + "\n")


def generate_markdown(summary: dict[str, Any], path: str | Path) -> str:
    """Samples and rejects, the reject reasons, and the type and source mix beside the paper's."""
    lines = [f"## Dataset generation: {summary['samples']} samples, {summary['rejects']} rejects", ""]
    for key, title in (("by_type", "question type"), ("by_source", "source")):
        rows = summary.get(key) or {}
        if rows:
            lines += [f"| {title} | samples | share (%) | paper (%) |", "|---|---|---|---|"]
            lines += [
                f"| {name} | {r['count']} | {pct(r['share'])} | {pct(r.get('paper_share'))} |"
                for name, r in rows.items()
            ]
            lines.append("")
    reasons = summary.get("reject_reasons") or {}
    if reasons:
        lines += ["| rejected at: reason | count |", "|---|---|"]
        lines += [f"| {html.escape(reason)} | {n} |" for reason, n in reasons.items()]
    return _write(path, "\n".join(lines) + "\n")


def selection_views(selection: dict[str, Any], markdown_path: str | Path, html_path: str | Path) -> str:
    """Every checkpoint's selection-set accuracy (Markdown) and the accuracy-vs-step curves (HTML)."""
    from audiomcq.evaluation.paper_report import curves_png

    chosen = selection["selected"]
    lines = [
        f"## Checkpoint selection: {chosen['stage']} step {chosen['step']} ({pct(chosen['accuracy'])}%)",
        "",
        f"Rule: {selection['rule']}. Why: {selection['why']}.",
        "",
        "| stage | step | accuracy (%) | AC-strong (%) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {c['stage']} | {c['step']} | {pct(c['accuracy'])} | {pct(c['ac_strong'])} |"
        for c in selection["candidates"]
    ]
    text = "\n".join(lines) + "\n"
    img = base64.b64encode(curves_png({"run": selection})).decode()
    _write(
        html_path, f"<html><body><pre>{html.escape(text)}</pre><img src='data:image/png;base64,{img}'/></body></html>"
    )
    return _write(markdown_path, text)


def decision_markdown(name: str, model: str, outcome: Any, path: str | Path) -> str:
    """The promotion gate's verdict, each check behind it, and what was done about it."""
    decision = outcome.decision
    verdict = "promote" if decision.promote else "keep production"
    lines = [
        f"## Promotion gate: {verdict} ({outcome.action})",
        "",
        f"Candidate: `{name}` at `{model}`.",
        "",
        f"{html.escape(outcome.message)}",
        "",
        "| check |",
        "|---|",
    ]
    lines += [f"| {html.escape(reason)} |" for reason in decision.reasons]
    return _write(path, "\n".join(lines) + "\n")
