"""The demo's target table judges the measured numbers, not the recipe's hopes."""

from audiomcq.evaluation.report import checks


def _metrics(strong: float) -> dict:
    """A model's evaluation as the demo's evaluate step records it: its ``audiomcq eval`` summary."""
    audio = {"ac_strong": {"accuracy": strong, "correct": round(strong / 10), "count": 10}}
    return {"tasks": {"synthetic": {"modes": {"audio": audio}}}}


def _data(w2s_sft: float, w2s_grpo: float, rewards: list[float], text: float, audio: float, weak: float) -> dict:
    return {
        "metrics": {
            "base": _metrics(80.0),
            "weak_to_strong/sft": _metrics(w2s_sft),
            "weak_to_strong/grpo": _metrics(w2s_grpo),
        },
        "runs": {"weak_to_strong": {"grpo": {"reward": rewards}}},
        "filter": {
            "rules": {"paper": {"probes": ["silence:30"], "min_correct": 2}},
            "models": {"filter0": {"silence:30": {"text_answerable": text, "audio_dependent": audio, "all": 50.0}}},
            "ground_truth": {
                "paper": {"agreement": 80.0, "weak_recall": weak},
                "silence:30+mismatch": {"agreement": weak, "weak_recall": weak},
            },
        },
    }


def test_all_targets_met_when_the_final_model_beats_the_base_and_reward_rises():
    # The Weak-to-Strong SFT checkpoint (weak items only) may dip; the paradigm's model is its GRPO output.
    rows = checks(_data(70.0, 85.0, [1.0, 1.0, 1.2, 1.4], text=96.0, audio=27.0, weak=98.0))
    assert all(ok for _, _, ok in rows), rows
    assert any("weak_to_strong/grpo" in what for what, _, _ in rows)


def test_each_missed_target_is_reported():
    rows = checks(_data(90.0, 79.0, [1.4, 1.4, 1.2, 1.0], text=85.0, audio=50.0, weak=90.0))
    missed = [what for what, _, ok in rows if not ok]
    assert len(missed) == 6 and len(rows) == 6, rows
    assert "79.0" in {w: m for w, m, _ in rows}[missed[0]]
