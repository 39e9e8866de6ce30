"""The demo's report: filter behaviour, label quality against ground truth, accuracy per paradigm and stage on the
held-out split (all, strong-AC subset, silence), GRPO reward, the selected checkpoint; Markdown, HTML and a PNG."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from audiomcq.evaluation.select import SELECTION_TASK
from audiomcq.formats import pct
from audiomcq.jsonio import load_json
from audiomcq.timing import timed

STAGES = ("base", "sft", "grpo")


def collect(
    labels_dir: str, metrics_dirs: list[str], run_dirs: list[str], selection_dir: str, corpus_dir: str | None = None
) -> dict[str, Any]:
    """Everything the report shows, read from the stage outputs."""
    metrics: dict[str, Any] = {}
    for d in metrics_dirs:
        metrics.update(load_json(Path(d) / "metrics.json"))
    runs = {s["paradigm"]: s for s in (load_json(Path(d) / "summary.json") for d in run_dirs)}
    sdg = Path(corpus_dir) / "sdg" / "summary.json" if corpus_dir else None
    return {
        "sdg": load_json(sdg) if sdg is not None and sdg.is_file() else None,
        "filter": load_json(Path(labels_dir) / "train" / "stats.json"),
        "filter_eval": load_json(Path(labels_dir) / "eval" / "stats.json"),
        "metrics": metrics,
        "runs": runs,
        "selection": load_json(Path(selection_dir) / "selection.json"),
    }


def _acc(metrics: dict[str, Any], name: str, mode: str, group: str) -> float | None:
    """A model's held-out accuracy (``group``: ``total`` or ``ac_strong``) from its ``audiomcq eval`` summary."""
    task = metrics.get(name, {}).get("tasks", {}).get(SELECTION_TASK, {})
    cell = task.get("modes", {}).get(mode, {}).get(group)
    return None if cell is None else cell["accuracy"]


def markdown(data: dict[str, Any]) -> str:
    """The report as Markdown."""
    f, m = data["filter"], data["metrics"]
    primary = f["rules"]["paper"]["probes"][0]
    lines = ["# AudioMCQ embedded-default run", "", f"## Filter models under the paper's probe `{primary}`", ""]
    lines += [
        "| filter model (training pool) | text-answerable | audio-dependent | all | unparsed |",
        "|---|---|---|---|---|",
    ]
    for name, probes in f["models"].items():
        acc = probes[primary]
        cells = [acc.get("text_answerable"), acc.get("audio_dependent"), acc["all"]]
        lines.append(f"| {name} | " + " | ".join(pct(c) for c in cells) + f" | {acc.get('unparsed', 0)} |")
    gt = f.get("ground_truth") or {}
    lines += ["", f"## Audio-contribution labels ({f['rule']}): {f['weak']} weak / {f['strong']} strong", ""]
    if gt:
        chance = f.get("chance") or {}
        lines += [
            (
                "Each rule variant against the synthetic ground truth (weak = answerable from text by construction). "
                f"Chance false-weak rate of the paper's rule: {pct(chance.get('independent'))} (independent guessers)"
                f" / {pct(chance.get('shared_constant'))} (a guess shared by all models)."
            ),
            "",
            (
                "| rule | probes | agreement | weak precision | weak recall (text-answerable labelled weak) "
                "| false-weak (audio-dependent labelled weak) |"
            ),
            "|---|---|---|---|---|---|",
        ]
        for rule, q in gt.items():
            probes = ", ".join(f["rules"][rule]["probes"])
            cells = [q["agreement"], q["weak_precision"], q["weak_recall"], q["false_weak_rate"]]
            lines.append(f"| {rule} | {probes} | " + " | ".join(pct(c) for c in cells) + " |")
    scores = ", ".join(f"{k}: {v}" for k, v in f.get("graded_score", {}).items())
    lines += ["", f"Graded audio-contribution score (share of silent answers right) → items: {scores}.", ""]
    ev = data["filter_eval"]
    lines += ["", f"Held-out split: {ev['weak']} weak / {ev['strong']} strong.", ""]
    lines += ["## Held-out accuracy (%)", "", "Chance on the 4-option questions is 25.0.", ""]
    lines += ["| model | with audio | strong-AC subset | in silence | strong-AC in silence |", "|---|---|---|---|---|"]
    for name in m:
        lines.append(
            f"| {name} | {pct(_acc(m, name, 'audio', 'total'))} | {pct(_acc(m, name, 'audio', 'ac_strong'))} | "
            f"{pct(_acc(m, name, 'silence', 'total'))} | {pct(_acc(m, name, 'silence', 'ac_strong'))} |"
        )
    lines += ["", "## GRPO mean reward (first step → last step)", ""]
    for paradigm, run in data["runs"].items():
        rewards = run.get("grpo", {}).get("reward") or []
        if rewards:
            first, last, k = _reward_trend(rewards)
            lines.append(f"- {paradigm}: {first:.3f} → {last:.3f} (mean of the first and last {k} steps)")
    lines += ["", "## Targets of the embedded default", ""]
    lines += ["| target | measured | met |", "|---|---|---|"]
    lines += [f"| {what} | {measured} | {'yes' if ok else '**no**'} |" for what, measured, ok in checks(data)]
    sel = data["selection"]
    lines += ["", f"## Selected: `{sel['selected']}` ({pct(sel['accuracy'])}% with audio; rule: {sel['rule']})", ""]
    if data.get("sdg"):
        g = data["sdg"]
        types = ", ".join(f"{t} {v['count']}" for t, v in g["by_type"].items())
        reasons = ", ".join(f"{r} {n}" for r, n in g["reject_reasons"].items()) or "none"
        lines += [
            "## Dataset generation (template backend, loop pool captions)",
            "",
            f"{g['samples']} samples ({types}); rejects: {reasons}.",
            "",
        ]
    return "\n".join(lines)


def _reward_trend(rewards: list[float]) -> tuple[float, float, int]:
    """Mean reward over the first and the last quarter of the steps (single steps are too noisy to compare)."""
    k = max(1, len(rewards) // 4)
    return sum(rewards[:k]) / k, sum(rewards[-k:]) / k, k


def checks(data: dict[str, Any], chance: float = 25.0) -> list[tuple[str, str, bool]]:
    """The demo's acceptance targets, measured on this run: ``(target, measured, met)``.

    A paradigm's post-trained model is its last stage (GRPO after SFT); the intermediate SFT checkpoint of
    Weak-to-Strong is trained on weak items only and is shown in the accuracy table, not judged here."""
    m, f = data["metrics"], data["filter"]
    out: list[tuple[str, str, bool]] = []
    base = _acc(m, "base", "audio", "ac_strong")
    for paradigm, run in data["runs"].items():
        final = next((f"{paradigm}/{s}" for s in ("grpo", "sft") if f"{paradigm}/{s}" in m), None)
        acc = _acc(m, final, "audio", "ac_strong") if final else None
        ok = acc is not None and acc >= chance + 20 and (base is None or acc >= base)
        out.append((f"{final}: strong-AC >= chance + 20 ({chance + 20:.0f}) and >= base ({pct(base)})", pct(acc), ok))
        rewards = run.get("grpo", {}).get("reward") or []
        if rewards:
            first, last, k = _reward_trend(rewards)
            trend = f"{first:.3f} → {last:.3f}"
            out.append((f"{paradigm}: GRPO raises the mean reward (first vs last {k} steps)", trend, last > first))
    primary = f["rules"]["paper"]["probes"][0]
    for name, probes in f["models"].items():
        text, audio = probes[primary].get("text_answerable"), probes[primary].get("audio_dependent")
        out.append((f"{name} in silence: text-answerable >= 90", pct(text), text is not None and text >= 90))
        # At most what a constant guess gets, plus slack: a model in silence must not answer audio questions.
        blind = audio is not None and audio <= chance + 10
        what = f"{name} in silence: audio-dependent at most a constant guess (<= {chance + 10:.0f})"
        out.append((what, pct(audio), blind))
    weak = (f.get("ground_truth") or {}).get("paper", {}).get("weak_recall")
    out.append(("text-answerable items labelled weak >= 95", pct(weak), weak is not None and weak >= 95))
    gt = f.get("ground_truth") or {}
    if len(gt) > 1:  # beyond the paper: some variant of the rule should agree with the ground truth
        best = max(gt, key=lambda rule: gt[rule]["agreement"] or 0.0)
        agree, recall = gt[best]["agreement"] or 0.0, gt[best]["weak_recall"] or 0.0
        what = f"best rule variant ({best}): agreement >= 95 and weak recall >= 95"
        out.append((what, f"{pct(agree)} / {pct(recall)}", agree >= 95 and recall >= 95))
    return out


def plot_png(data: dict[str, Any]) -> bytes:
    """Accuracy per stage for each paradigm, with audio (all and strong-AC) and in silence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = data["metrics"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, group, title in ((axes[0], "total", "held-out"), (axes[1], "ac_strong", "strong-AC subset")):
        for paradigm in data["runs"]:
            names = ["base", f"{paradigm}/sft", f"{paradigm}/grpo"]
            for mode, style in (("audio", "-o"), ("silence", "--x")):
                ys = [_acc(m, n, mode, group) for n in names]
                xs = [i for i, y in enumerate(ys) if y is not None]
                ax.plot(xs, [ys[i] for i in xs], style, label=f"{paradigm} ({mode})")
        ax.axhline(25.0, color="grey", lw=0.8, ls=":")
        ax.set_xticks(range(3), STAGES)
        ax.set_title(title)
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("accuracy (%)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


@timed
def write_report(
    labels_dir: str,
    metrics_dirs: list[str],
    run_dirs: list[str],
    selection_dir: str,
    markdown_path: str,
    html_path: str | None = None,
    png_path: str | None = None,
    corpus_dir: str | None = None,
) -> str:
    """Write the Markdown report (and an HTML page with the plot inline, and the PNG); returns the Markdown."""
    data = collect(labels_dir, metrics_dirs, run_dirs, selection_dir, corpus_dir)
    text = markdown(data)
    png = plot_png(data)
    Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
    Path(markdown_path).write_text(text + "\n")
    if png_path is None and html_path:
        png_path = f"{html_path}.png"  # beside the HTML artifact, for viewers without HTML
    if png_path:
        Path(png_path).write_bytes(png)
    if html_path:
        img = base64.b64encode(png).decode()
        Path(html_path).write_text(
            f"<html><body><pre>{text}</pre><img src='data:image/png;base64,{img}'></body></html>"
        )
    return text
