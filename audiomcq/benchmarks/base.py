"""What every benchmark adapter shares: loading into MCQ records, reporting (never dropping) validation problems,
and scoring a prediction file the way the benchmark's official script does.

An adapter is one small class: its name, how a raw item maps to a record and back, which keys hold predictions,
which fields the official report breaks down by, and its per-item verdict. Adding a benchmark is one file plus one
registry entry (``audiomcq.benchmarks.BENCHMARKS``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from audiomcq.data.record import MCQRecord, Problem, check_audio, validate
from audiomcq.errors import RecordError
from audiomcq.jsonio import iter_json_items
from audiomcq.scoring import extract_answer, string_match

log = logging.getLogger(__name__)

MISSING_GROUP = "(none)"


@dataclass
class BenchmarkSet:
    """A loaded benchmark: every item as a record, plus each record's validation problems."""

    name: str
    source: str
    records: list[MCQRecord]
    problems: dict[str, list[Problem]] = field(default_factory=dict)

    def problem_counts(self) -> Counter[str]:
        """How many records have each kind of problem."""
        return Counter(code for probs in self.problems.values() for code in {p.code for p in probs})

    def summary(self) -> str:
        """One line: items and problem counts."""
        counts = self.problem_counts()
        detail = ", ".join(f"{code} {n}" for code, n in sorted(counts.items())) or "no problems"
        return f"{self.name} ({self.source}): {len(self.records)} items; {detail}"


class Benchmark:
    """Base adapter; subclasses set the class attributes and override what their format needs."""

    name: ClassVar[str]
    source_dataset: ClassVar[str]
    #: raw key -> record key for fields whose names differ (e.g. MMAU ``audio_id`` -> ``audio_path``).
    renames: ClassVar[dict[str, str]] = {}
    #: raw field copied into ``question_type`` (kept in the raw fields as well).
    type_field: ClassVar[str | None] = None
    #: prediction keys in order of preference (the current official key first).
    prediction_keys: ClassVar[tuple[str, ...]]
    #: fields of the official per-group report; ``"a/b"`` groups by the pair of fields a and b.
    breakdowns: ClassVar[tuple[str, ...]]
    #: what the official script does with an item that has no prediction key: "skip" it, or count it "wrong".
    missing_prediction: ClassVar[str] = "skip"

    # --- loading -------------------------------------------------------------------------------------------------
    def iter_raw(self, path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(location, raw item)``; the location names file and line/item for error messages."""
        for loc, raw in iter_json_items(path):
            yield f"{path}:{loc}", raw

    def to_record(self, raw: dict[str, Any]) -> MCQRecord:
        """Map a raw item to a record; raises ValueError/KeyError/TypeError when the item lacks what it needs."""
        obj = {self.renames.get(k, k): v for k, v in raw.items()}
        obj.setdefault("source_dataset", self.source_dataset)
        obj.setdefault("answer", "")  # hidden-answer splits (MMAU-test) load for inference
        if self.type_field and raw.get(self.type_field) is not None:
            obj["question_type"] = group_value(raw[self.type_field])
        return MCQRecord.from_dict(obj)

    def to_raw(self, record: MCQRecord) -> dict[str, Any]:
        """The inverse of to_record: the item in the benchmark's own format (for official prediction files)."""
        back = {v: k for k, v in self.renames.items()}
        out = {back.get(k, k): v for k, v in record.to_dict().items() if k not in ("source_dataset", "question_type")}
        return out

    def load(self, path: str | Path, audio_root: str | Path | None = None) -> BenchmarkSet:
        """Load every item as it is; problems are recorded per item, never used to drop it.

        A structural error (an item without question, choices or answer) still raises, naming file and item,
        because such an item cannot be asked or scored at all.
        """
        records: list[MCQRecord] = []
        problems: dict[str, list[Problem]] = {}
        seen: set[str] = set()
        for loc, raw in self.iter_raw(path):
            record = self._record_at(loc, raw)
            found = validate(record)
            if audio_root is not None:
                found.extend(check_audio(record, audio_root))
            if record.id in seen:
                found.append(Problem("duplicate_id", f"id {record.id!r} occurs more than once"))
            seen.add(record.id)
            if found:
                problems[record.id] = found
            records.append(record)
        result = BenchmarkSet(self.name, str(path), records, problems)
        if problems:
            log.info("%s", result.summary())
        return result

    def _record_at(self, loc: str, raw: Any) -> MCQRecord:
        if not isinstance(raw, dict):
            raise RecordError(loc, None, f"expected a JSON object, found {type(raw).__name__}")
        try:
            return self.to_record(raw)
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise RecordError(loc, None, f"not a valid {self.name} item: {reason}") from None

    # --- scoring -------------------------------------------------------------------------------------------------
    def prediction(self, raw: dict[str, Any]) -> tuple[bool, str | None]:
        """``(present, value)`` of the item's prediction under the first prediction key it has.

        The value is a string or None (JSON null); any other type is an error, since the official scripts would
        crash on it and turning it into text could score a list or number as an answer.
        """
        for key in self.prediction_keys:
            if key in raw:
                value = raw[key]
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"prediction {key!r} must be a string or null, found {type(value).__name__}")
                return True, value
        return False, None

    def verdict(self, record: MCQRecord, prediction: str | None) -> bool | None:
        """True/False, or None when the official script cannot parse the prediction (MMSU letters).

        MMAU/MMAR: a null prediction is an empty one, hence wrong.
        """
        return string_match(record.answer, prediction or "", record.choices)

    def group_field(self, record: MCQRecord, name: str) -> Any:
        """The value breakdown ``name`` groups ``record`` by: the record's field of that name."""
        return record.get(name)

    def score(self, path: str | Path, *, extract: bool = False) -> dict[str, Any]:
        """Score a prediction file: official totals, strict totals, official breakdowns and per-item verdicts.

        ``total`` follows the official script (items it skips are out of the denominator); ``strict`` counts every
        item, an unparsed or missing prediction as wrong. Accuracies are percentages, as the official scripts print.
        """
        tally = Tally(self.breakdowns, self.group_field)
        for loc, raw in self.iter_raw(path):
            record = self._record_at(loc, raw)
            if not record.answer:
                raise RecordError(
                    loc, None, "item has no answer (hidden-answer split?): score it on the official server"
                )
            try:
                present, text = self.prediction(raw)
            except ValueError as exc:
                raise RecordError(loc, None, str(exc)) from None
            if not present and self.missing_prediction == "skip":
                tally.add(record, None, "missing")
                continue
            if extract and text is not None:
                text = extract_answer(text)
            correct = self.verdict(record, text) if present else False
            tally.add(record, correct, "scored" if correct is not None else "unparsed", missing=not present)
        if tally.count_all == 0:
            raise RecordError(str(path), None, "no items to score")
        result = tally.result()
        return {"benchmark": self.name, "predictions": str(path), **result}


def group_value(value: Any) -> str:
    """A breakdown key: lists (MMAU's ``["Reasoning"]`` categories) are joined, missing values named."""
    if value is None or value == "":
        return MISSING_GROUP
    if isinstance(value, list):
        return " + ".join(str(v) for v in value) if value else MISSING_GROUP
    return str(value)


def _acc(correct: int, count: int) -> float:
    return 100.0 * correct / count if count else 0.0


class Tally:
    """Counts for one scoring run, overall and per breakdown group."""

    def __init__(
        self, breakdowns: tuple[str, ...], group_field: Callable[[MCQRecord, str], Any] = MCQRecord.get
    ) -> None:
        self.breakdowns, self.group_field = breakdowns, group_field
        self.items: list[dict[str, Any]] = []
        self.correct = self.count = self.unparsed = self.missing = 0
        self.groups: dict[str, dict[str, list[int]]] = {f: {} for f in breakdowns}

    @property
    def count_all(self) -> int:
        """Items seen, scored or not."""
        return len(self.items)

    def add(self, record: MCQRecord, correct: bool | None, status: str, *, missing: bool = False) -> None:
        """Record one item's verdict (``correct`` None = left out of the official denominator)."""
        item: dict[str, Any] = {"id": record.id, "correct": correct}
        if status != "scored":
            item["status"] = status
        self.items.append(item)
        self.missing += status == "missing" or missing
        if correct is None:
            self.unparsed += status == "unparsed"
            return
        self.count += 1
        self.correct += correct
        for fld in self.breakdowns:
            key = "/".join(group_value(self.group_field(record, part)) for part in fld.split("/"))
            cell = self.groups[fld].setdefault(key, [0, 0])
            cell[0] += correct
            cell[1] += 1

    def result(self) -> dict[str, Any]:
        """The JSON the CLI writes."""
        n_all = self.count_all
        return {
            "total": {
                "accuracy": _acc(self.correct, self.count),
                "correct": self.correct,
                "count": self.count,
                "unparsed": self.unparsed,
                "missing": self.missing,
            },
            "strict": {"accuracy": _acc(self.correct, n_all), "correct": self.correct, "count": n_all},
            "breakdown": {
                fld: {
                    key: {"accuracy": _acc(c, n), "correct": c, "count": n} for key, (c, n) in sorted(groups.items())
                }
                for fld, groups in self.groups.items()
            },
            "items": self.items,
        }
