"""Paradigm allocation, option shuffling, position balancing and the leakage guard."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from conftest import record_dict

from audiomcq.benchmarks import get_benchmark
from audiomcq.data.allocation import (
    allocate,
    check_no_leakage,
    find_leakage,
    position_balanced,
    shuffle_options,
)
from audiomcq.data.record import MCQRecord, validate
from audiomcq.errors import AudioMCQError


def _corpus(n_weak=60, n_strong=40):
    labels = ["weak"] * n_weak + ["strong"] * n_strong
    return [
        MCQRecord.from_dict(
            record_dict(id=f"q{i:03d}", audio_path=f"clips/c{i:03d}.wav", **{"audio-contribution": ac})
        )
        for i, ac in enumerate(labels)
    ]


@pytest.mark.parametrize(
    ("paradigm", "sft", "rl", "sft_weak", "rl_strong"),
    [
        ("weak_to_strong", 60, 40, 60, 40),
        ("mixed_to_strong", 60, None, None, None),
        ("mixed_to_mixed", 60, 40, None, None),
        ("all_sft", 100, 0, 60, 0),
        ("all_grpo", 0, 100, 0, 40),
    ],
)
def test_paradigms(paradigm, sft, rl, sft_weak, rl_strong):
    alloc = allocate(_corpus(), paradigm, seed=1)
    assert len(alloc.sft) == sft  # default SFT size = |weak|, the same for every SFT paradigm
    if rl is not None:
        assert len(alloc.rl) == rl
    if sft_weak is not None:
        assert sum(r.audio_contribution == "weak" for r in alloc.sft) == sft_weak
    if rl_strong is not None:
        assert sum(r.audio_contribution == "strong" for r in alloc.rl) == rl_strong
    assert not {r.id for r in alloc.sft} & {r.id for r in alloc.rl}
    if paradigm == "mixed_to_strong":
        assert all(r.audio_contribution == "strong" for r in alloc.rl)
        assert len(alloc.rl) == 40 - sum(r.audio_contribution == "strong" for r in alloc.sft)
    assert alloc.report["sft"]["count"] == sft


def test_allocation_is_deterministic_and_order_independent():
    corpus = _corpus()
    shuffled = corpus[:]
    random.Random(7).shuffle(shuffled)
    a = allocate(corpus, "mixed_to_mixed", seed=3)
    b = allocate(shuffled, "mixed_to_mixed", seed=3)
    c = allocate(corpus, "mixed_to_mixed", seed=4)
    assert sorted(r.id for r in a.sft) == sorted(r.id for r in b.sft)
    assert [r.id for r in a.rl] == [r.id for r in b.rl]
    assert sorted(r.id for r in a.sft) != sorted(r.id for r in c.sft)


def test_sizes_as_counts_and_fractions():
    assert len(allocate(_corpus(), "mixed_to_mixed", sft_size=10).sft) == 10
    assert len(allocate(_corpus(), "mixed_to_mixed", sft_size=0.25).sft) == 25
    assert len(allocate(_corpus(), "weak_to_strong", sft_size=50, rl_size=5).rl) == 5
    with pytest.raises(AudioMCQError, match="needs 70 weak records for SFT but only 60 exist"):
        allocate(_corpus(), "weak_to_strong", sft_size=70)
    with pytest.raises(AudioMCQError, match="fraction must be in"):
        allocate(_corpus(), "mixed_to_mixed", sft_size=1.5)


def test_unlabelled_and_duplicate_records_are_refused():
    corpus = _corpus()
    corpus[5].audio_contribution = None
    with pytest.raises(AudioMCQError, match="1 record\\(s\\) have no audio-contribution label"):
        allocate(corpus, "weak_to_strong")
    assert len(allocate(corpus, "all_sft").sft) == 100  # single-stage paradigms need no labels
    with pytest.raises(AudioMCQError, match="'q000' occurs more than once"):
        allocate([*_corpus(), _corpus()[0]], "all_sft")
    with pytest.raises(AudioMCQError, match="unknown paradigm"):
        allocate(_corpus(), "strong_to_weak")


def test_shuffle_options_keeps_answers_and_varies_order():
    records = _corpus(5, 5)
    out = shuffle_options(records, k=4, seed=0)
    assert len(out) == 40
    for original in records:
        copies = [r for r in out if r.extra["augmented_from"] == original.id]
        assert [r.id for r in copies] == [f"{original.id}#shuf{j}" for j in range(4)]
        assert len({tuple(r.choices) for r in copies}) == 4  # four distinct orders
        for r in copies:
            assert sorted(r.choices) == sorted(original.choices)
            assert r.answer == original.answer and validate(r) == []
    positions = Counter(r.answer_index for r in out)
    assert len(positions) == 4  # the answer moves around
    assert shuffle_options(records, 4, seed=0)[0].choices == out[0].choices  # deterministic


def test_shuffle_with_fewer_orders_than_copies_repeats_them():
    two = MCQRecord.from_dict(record_dict(choices=["Yes", "No"], answer="Yes"))
    orders = [tuple(r.choices) for r in shuffle_options([two], k=4)]
    assert len(orders) == 4 and set(orders) == {("Yes", "No"), ("No", "Yes")}


def test_position_balanced_mmau_test_mini(mmau_file):
    records = get_benchmark("mmau").load(mmau_file).records
    balanced = position_balanced(records)
    assert len(balanced) == 948 * 4 + 27 * 2 + 24 * 5 + 8 == 3974
    # Within each option count, every answer position appears exactly once per question.
    by_n = Counter((len(r.choices), r.extra["answer_position"]) for r in balanced)
    assert by_n == Counter(
        {
            **{(4, p): 948 for p in range(4)},
            **{(2, p): 27 for p in range(2)},
            **{(5, p): 24 for p in range(5)},
            **{(8, p): 1 for p in range(8)},
        }
    )
    for r in balanced:
        assert r.choices[r.extra["answer_position"]] == r.answer
    # Where the answer text occurs twice (16 items), the other copy may come first after rotation.
    repeated = {r.extra["balanced_from"] for r in balanced if r.answer_index != r.extra["answer_position"]}
    assert repeated <= {r.id for r in records if r.choices.count(r.answer) > 1}
    first = [r for r in balanced if r.extra["balanced_from"] == records[0].id]
    assert [r.choices for r in first] == [
        ["Man", "Woman", "Child", "Robot"],
        ["Robot", "Man", "Woman", "Child"],
        ["Child", "Robot", "Man", "Woman"],
        ["Woman", "Child", "Robot", "Man"],
    ]


def test_leakage_by_file_name_and_by_content(tmp_path):
    train = _corpus(3, 3)
    evaluation = [MCQRecord.from_dict(record_dict(id="e1", audio_path="other/dir/C002.WAV"))]
    leaks = find_leakage(train, evaluation)
    assert leaks == {"name:c002": {"train": ["q002"], "eval": ["e1"]}}
    with pytest.raises(AudioMCQError, match="1 audio asset\\(s\\) appear in both"):
        check_no_leakage(train, evaluation)
    # A renamed copy is caught when both roots are given (content hash).
    (tmp_path / "train" / "clips").mkdir(parents=True)
    (tmp_path / "eval").mkdir()
    (tmp_path / "train" / "clips" / "c004.wav").write_bytes(b"same bytes")
    (tmp_path / "eval" / "renamed.wav").write_bytes(b"same bytes")
    renamed = [MCQRecord.from_dict(record_dict(id="e2", audio_path="renamed.wav"))]
    assert find_leakage(train, renamed) == {}
    found = find_leakage(train, renamed, train_root=tmp_path / "train", eval_root=tmp_path / "eval")
    assert list(found.values()) == [{"train": ["q004"], "eval": ["e2"]}]
    # A root on one side only still compares names.
    same_name = [MCQRecord.from_dict(record_dict(id="e3", audio_path="c004.wav"))]
    assert list(find_leakage(train, same_name, train_root=tmp_path / "train")) == ["name:c004"]
