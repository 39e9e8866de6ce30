"""The released plugin's reward values, case by case."""

from __future__ import annotations

import pytest

from audiomcq.train.rewards import REWARDS, accuracy_reward, combined_reward, format_reward, get_reward

SOL = "<answer>Dog</answer>"


@pytest.mark.parametrize(
    ("completion", "solution", "accuracy", "fmt"),
    [
        ("<answer>Dog</answer>", SOL, 1.0, 1.0),
        ("<answer> dog </answer>", SOL, 1.0, 1.0),
        ("  <answer>Dog</answer>\n", SOL, 1.0, 1.0),
        ("<answer>\nDog\n</answer>", SOL, 1.0, 1.0),  # DOTALL for the reward (unlike eval extraction)
        ("Dog", SOL, 1.0, 0.0),  # no tag: the whole completion is the answer
        (" dog ", "Dog", 1.0, 0.0),  # untagged solution too
        ("<ANSWER>Dog</ANSWER>", SOL, 1.0, 0.0),  # accuracy ignores tag case, format does not
        ("<answer>Dog</answer> because it barks", SOL, 1.0, 0.0),
        ("<think>barking</think><answer>Dog</answer>", SOL, 1.0, 0.0),
        ("<answer>Cat</answer><answer>Dog</answer>", SOL, 0.0, 0.0),  # first answer counts
        ("<answer>Dog</answer><answer>Dog</answer>", SOL, 1.0, 0.0),
        ("<answer>Dog.</answer>", SOL, 0.0, 1.0),  # no punctuation normalisation
        ("<answer>The dog</answer>", SOL, 0.0, 1.0),
        ("<answer></answer>", SOL, 0.0, 1.0),
        ("<answer>Dog", SOL, 0.0, 0.0),
        ("<answer><answer>Dog</answer>", SOL, 0.0, 0.0),
        ("", SOL, 0.0, 0.0),
        ("<answer>Straße</answer>", "<answer>STRASSE</answer>", 0.0, 1.0),  # lower(), not casefold()
    ],
)
def test_plugin_values(completion, solution, accuracy, fmt):
    assert accuracy_reward([completion], solution=[solution]) == [accuracy]
    assert format_reward([completion], solution=[solution]) == [fmt]
    assert combined_reward(["accuracy", "format"], [completion], solution=[solution]) == [2.0 * accuracy + 0.5 * fmt]


def test_conversational_completions_as_trl_passes_them():
    completions = [
        [{"role": "assistant", "content": "<answer>Dog</answer>"}],
        [
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "<answer>"}, {"type": "text", "text": "Cat</answer>"}],
            }
        ],
    ]
    kwargs = {"prompts": [[{"role": "user", "content": "q"}]] * 2, "completion_ids": [[1], [2]]}
    assert accuracy_reward(completions, solution=[SOL, SOL], **kwargs) == [1.0, 0.0]
    assert format_reward(completions, solution=[SOL, SOL], **kwargs) == [1.0, 1.0]


def test_weights_and_names():
    assert {name: r.weight for name, r in REWARDS.items()} == {"accuracy": 2.0, "format": 0.5}
    assert get_reward("external_audio_choice_accuracy") is REWARDS["accuracy"]
    assert get_reward("external_format") is REWARDS["format"]
    with pytest.raises(KeyError, match="unknown reward 'length'"):
        get_reward("length")


def test_malformed_batches_raise_instead_of_scoring_zero():
    with pytest.raises(ValueError, match="needs the dataset's 'solution' column"):
        accuracy_reward(["<answer>Dog</answer>"])
    with pytest.raises(ValueError, match="2 completions but 1 solutions"):
        accuracy_reward(["a", "b"], solution=[SOL])
    with pytest.raises(TypeError, match="a completion must be a string"):
        format_reward([42])
