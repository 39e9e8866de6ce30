"""Streaming statistics of a filter run: labels per source and type, per-model accuracy per probe (with its unparsed
and truncated answers), every rule variant scored against the synthetic ground truth, the graded score's
distribution, the paper's numbers, the records left unlabelled because they exceed a model's context, and the clips
no model could hear (``audio_corrupt``) or that were cut to the models' window (``audio_trimmed``).

Everything is a running count, so memory does not grow with the input, and shard summaries add up exactly.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from math import comb
from typing import Any

from audiomcq.data.record import MCQRecord

# Paper: 54.8% weak / 45.2% strong overall; TACOS 73.3% strong; CompA-R 75.5% weak.
PAPER = {"overall_weak": 54.8, "sources": {"TACOS": ("strong", 73.3), "CompA-R": ("weak", 75.5)}}


@dataclass(frozen=True)
class Rule:
    """Weak if at least ``min_correct`` models are right in *every* probe of ``probes``."""

    name: str
    probes: tuple[str, ...]
    min_correct: int

    def votes(self, results: dict[str, dict[str, Any]]) -> int:
        return sum(all(_right(res[p]) for p in self.probes) for res in results.values())


def _right(cell: dict[str, Any]) -> bool:
    """A model is right in a probe when most of its samples are (greedy: its one answer)."""
    return 2 * sum(cell["correct"]) > len(cell["correct"])


def rule_variants(probe_names: list[str], min_correct: int) -> list[Rule]:
    """The paper's rule (the first probe that hides the audio, normally silence) and the variants that add each
    kind of extra probe, then all of them; duplicates are dropped."""
    hiding = [p for p in probe_names if not p.startswith("audio")]
    if not hiding:
        raise ValueError("filtering needs at least one probe that hides the audio (e.g. silence)")
    primary = hiding[0]
    rules = [Rule("paper", (primary,), min_correct)]
    for kind in ("mismatch", "shuffle", "noise"):
        extra = tuple(p for p in hiding[1:] if p.startswith(kind))
        if extra:
            rules.append(Rule(f"{primary}+{kind}", (primary, *extra), min_correct))
    if len(hiding) > 1:
        rules.append(Rule("all-probes", tuple(hiding), min_correct))
    seen, unique = set(), []
    for rule in rules:
        if rule.probes not in seen:
            seen.add(rule.probes)
            unique.append(rule)
    return unique


class Summary:
    """Accumulates one labelled record at a time; ``result()`` is the JSON for ``stats.json``."""

    def __init__(self, rules: list[Rule], label_rule: str) -> None:
        self.rules, self.label_rule = rules, label_rule
        self.count = self.missing_audio = self.over_length = self.corrupt_audio = self.trimmed_audio = 0
        self.labels: Counter[str] = Counter()
        self.groups: dict[str, Counter[str]] = defaultdict(Counter)
        self.probe_tally: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.unparsed: Counter[str] = Counter()
        self.truncated: Counter[str] = Counter()
        self.confusion: dict[str, Counter[str]] = defaultdict(Counter)
        self.scores: Counter[str] = Counter()
        self.chance = [0.0, 0.0, 0.0]  # sum of 1/n, sum of P(>= m of K independent guessers right), items

    def add(self, record: MCQRecord, acf: dict[str, Any]) -> None:
        self.count += 1
        self.missing_audio += bool(acf.get("audio_missing"))
        self.corrupt_audio += bool(acf.get("audio_corrupt"))
        self.trimmed_audio += bool(acf.get("audio_trimmed"))
        if acf.get("over_length"):  # never asked of every model: no label, no verdicts (listed in over_length.jsonl)
            self.over_length += 1
            return
        label = record.audio_contribution or "unlabelled"
        self.labels[label] += 1
        self.groups[f"source:{record.source_dataset or '?'}"][label] += 1
        self.groups[f"type:{record.question_type or '?'}"][label] += 1
        truth = record.extra.get("text_answerable")
        subset = None if truth is None else ("text_answerable" if truth else "audio_dependent")
        for model, probes in acf["models"].items():
            for probe, cell in probes.items():
                if probe == "audio" and (acf.get("audio_missing") or acf.get("audio_corrupt")):
                    continue  # the with-audio control only counts records whose audio a model could hear
                self.unparsed[f"{model}/{probe}"] += sum(a is None for a in cell["answers"])
                self.truncated[f"{model}/{probe}"] += sum(cell.get("truncated", ()))
                for group in ("all", subset):
                    if group:
                        tally = self.probe_tally[(model, probe, group)]
                        tally[0] += _right(cell)
                        tally[1] += 1
        self.scores[f"{acf['score']:.2f}"] += 1
        if truth is None:
            return
        for rule in self.rules:
            weak = acf["votes"][rule.name] >= rule.min_correct
            self.confusion[rule.name][("t" if weak == truth else "f") + ("p" if weak else "n")] += 1
        if not truth:
            k, n = len(acf["models"]), len(record.choices)
            m = self.rules[0].min_correct
            self.chance[0] += 1 / n
            self.chance[1] += sum(comb(k, j) * (1 / n) ** j * (1 - 1 / n) ** (k - j) for j in range(m, k + 1))
            self.chance[2] += 1

    def result(self) -> dict[str, Any]:
        models: dict[str, dict[str, Any]] = defaultdict(dict)
        for (model, probe, group), (right, n) in sorted(self.probe_tally.items()):
            models[model].setdefault(probe, {})[group] = round(100.0 * right / n, 2)
        for kind, counts in (("unparsed", self.unparsed), ("truncated", self.truncated)):
            for key, n in counts.items():
                model, probe = key.split("/", 1)
                models[model].setdefault(probe, {})[kind] = n
        truncated: Counter[str] = Counter()
        for key, n in self.truncated.items():
            truncated[key.split("/", 1)[0]] += n
        labelled = self.labels["weak"] + self.labels["strong"]
        out: dict[str, Any] = {
            "count": self.count,
            "labelled_by": self.label_rule,
            "weak": self.labels["weak"],
            "strong": self.labels["strong"],
            "weak_pct": round(100.0 * self.labels["weak"] / labelled, 2) if labelled else None,
            "audio_missing": self.missing_audio,
            "audio_corrupt": self.corrupt_audio,
            "audio_trimmed": self.trimmed_audio,
            "over_length": self.over_length,
            "truncated": dict(truncated),
            "rules": {r.name: {"probes": list(r.probes), "min_correct": r.min_correct} for r in self.rules},
            "models": dict(models),
            "groups": {g: dict(c) for g, c in sorted(self.groups.items())},
            "graded_score": dict(sorted(self.scores.items())),
            "paper": self.paper_comparison(),
        }
        if self.confusion:
            out["ground_truth"] = {name: _quality(c) for name, c in self.confusion.items()}
            items = self.chance[2] or 1
            out["chance"] = {
                "shared_constant": round(100.0 * self.chance[0] / items, 2),
                "independent": round(100.0 * self.chance[1] / items, 2),
            }
        return out

    def paper_comparison(self) -> dict[str, Any] | None:
        """Side by side with the paper, when the input holds AudioMCQ sources."""
        rows = {}
        for source, (label, paper_pct) in PAPER["sources"].items():
            c = self.groups.get(f"source:{source}")
            if c:
                rows[source] = {
                    "label": label,
                    "ours": round(100.0 * c[label] / sum(c.values()), 2),
                    "paper": paper_pct,
                }
        labelled = self.labels["weak"] + self.labels["strong"]
        if not rows or not labelled:
            return None
        return {
            "overall_weak": {"ours": round(100.0 * self.labels["weak"] / labelled, 2), "paper": PAPER["overall_weak"]},
            "sources": rows,
        }


def _quality(c: Counter[str]) -> dict[str, float | None]:
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    n = tp + fp + fn + tn

    def pct(a: int, b: int) -> float | None:
        return round(100.0 * a / b, 2) if b else None

    return {
        "agreement": pct(tp + tn, n),
        "weak_precision": pct(tp, tp + fp),
        "weak_recall": pct(tp, tp + fn),
        "false_weak_rate": pct(fp, fp + tn),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }
