"""The promotion decision on real ``audiomcq eval`` metric files: margins, floors and the AC-strong subset."""

from __future__ import annotations

import json

import pytest

from audiomcq.promote.decision import Criteria, decide, load_metrics


def test_decisions_on_real_metrics(metrics):
    prod = load_metrics([metrics["prod"]])
    assert prod["synthetic"]["modes"]["audio"]["total"]["accuracy"] == 62.5  # what the harness scored
    assert prod["synthetic"]["modes"]["audio"]["ac_strong"]["accuracy"] == 75.0
    better = decide(load_metrics([metrics["better"]]), prod, Criteria(margin=5.0))
    assert better.promote and "candidate 87.50 vs production 62.50 (+25.00" in better.reasons[0]
    assert not decide(load_metrics([metrics["better"]]), prod, Criteria(margin=30.0)).promote
    worse = decide(load_metrics([metrics["worse"]]), prod)
    assert not worse.promote and worse.reasons[0].startswith("FAIL: synthetic accuracy: candidate 37.50")
    regress = decide(load_metrics([metrics["strong-regress"]]), prod)
    assert not regress.promote
    assert regress.reasons == [
        "ok: synthetic accuracy: candidate 75.00 vs production 62.50 (+12.50; needs > 0 and >= margin 0.00)",
        "FAIL: synthetic AC-strong subset: candidate 50.00 vs production 75.00 (-25.00; may drop at most 0.00)",
    ]
    assert decide(load_metrics([metrics["strong-regress"]]), prod, Criteria(ac_strong_tolerance=25)).promote
    # no production model: the floors decide
    assert decide(load_metrics([metrics["worse"]]), None, Criteria(floors={"synthetic": 50})).promote is False
    assert decide(load_metrics([metrics["prod"]]), None, Criteria(floors={"synthetic:ac_strong": 70})).promote


def _task(accuracy: float, items: int = 8, strong: float | None = None, strong_items: int = 4) -> dict:
    """One task's metrics as `audiomcq eval` writes them."""
    audio = {"total": {"accuracy": accuracy, "count": items}}
    if strong is not None:
        audio["ac_strong"] = {"accuracy": strong, "count": strong_items}
    return {"modes": {"audio": audio}}


def test_margin_and_tolerance_hold_on_ties_that_float_rounding_breaks():
    assert 1.4 - 0.4 < 1.0 and 0.3 < 0.4 - 0.1  # the ties, as floats
    gain = decide({"t": _task(1.4)}, {"t": _task(0.4)}, Criteria(margin=1.0))
    assert gain.promote, gain.reasons
    drop = decide({"t": _task(60, strong=0.3)}, {"t": _task(50, strong=0.4)}, Criteria(ac_strong_tolerance=0.1))
    assert drop.promote, drop.reasons
    assert not decide({"t": _task(50.0)}, {"t": _task(50.0)}).promote  # a tie still keeps production


def test_ac_strong_is_compared_on_decisive_benchmarks_and_equal_subsets_only():
    cand = {"a": _task(80, strong=80), "b": _task(80, strong=10)}
    base = {"a": _task(70, strong=70), "b": _task(70, strong=70)}
    assert decide(cand, base, Criteria(benchmarks=("a",))).promote  # b is not part of this decision
    assert not decide(cand, base).promote  # ... unless it is
    other = decide({"a": _task(80, strong=80, strong_items=3)}, {"a": _task(70, strong=70)})
    assert not other.promote
    assert other.reasons[-1] == (
        "FAIL: a AC-strong subset: candidate scored 3 items, production 4: different subsets are not comparable"
    )


def test_a_file_that_is_not_eval_metrics_is_named(tmp_path):
    bad = tmp_path / "selection.json"
    bad.write_text(json.dumps({"selected": {"path": "x"}}))
    with pytest.raises(Exception, match=r"selection.json: not an `audiomcq eval` metrics file"):
        load_metrics([bad])
