"""The model-card prompt, exactly."""

from __future__ import annotations

from audiomcq.prompts import SYSTEM_PROMPT, build_messages, solution, user_prompt
from audiomcq.train.rewards import accuracy_reward, format_reward


def test_system_prompt_is_the_model_card_one():
    assert SYSTEM_PROMPT == (
        "You are an audio understanding model that answers multiple choice questions based on audio content."
    )


def test_user_prompt_renders_choices_as_a_python_list_repr():
    assert user_prompt("What animal is heard?", ["Dog", "Cat"]) == (
        "What animal is heard? Please choose the answer from the following options: ['Dog', 'Cat']. "
        "Output the final answer in <answer> </answer>."
    )


def test_quotes_follow_python_repr():
    text = user_prompt("Q?", ["Don't know", 'He said "hi"', "21.2s"])
    assert "[\"Don't know\", 'He said \"hi\"', '21.2s']" in text


def test_braces_in_questions_are_kept_verbatim():
    assert user_prompt("Is {x} heard?", ("a", "b")).startswith("Is {x} heard? Please choose")


def test_messages_put_the_audio_block_first():
    messages = build_messages("Q?", ["a", "b"], audio="clip.wav")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == [{"type": "text", "text": SYSTEM_PROMPT}]
    assert messages[1]["content"][0] == {"type": "audio", "audio": "clip.wav"}
    assert messages[1]["content"][1] == {"type": "text", "text": user_prompt("Q?", ["a", "b"])}
    assert [m["role"] for m in build_messages("Q?", ["a", "b"], system=False)] == ["user"]


def test_the_solution_is_what_both_rewards_accept():
    target = solution("Engine revving")
    assert target == "<answer>Engine revving</answer>"
    assert accuracy_reward([target], solution=[target]) == [1.0]
    assert format_reward([target]) == [1.0]
