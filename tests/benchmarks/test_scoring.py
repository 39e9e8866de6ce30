"""Answer extraction and the official matchers, item by item."""

from __future__ import annotations

import pytest

from audiomcq.scoring import extract_answer, mmsu_letter, string_match

MAN = ["Man", "Woman", "Child", "Robot"]


@pytest.mark.parametrize(
    ("prediction", "answer", "choices", "expected"),
    [
        # The behaviour recorded by running the official function.
        ("man.", "Man", MAN, True),
        ("<answer>Man</answer>", "Man", MAN, True),
        ("The answer is Man", "Man", MAN, True),
        ("(A) Man", "Man", MAN, True),
        ("A", "Man", MAN, False),  # letters are never accepted
        ("Man or Woman", "Man", MAN, False),
        ("It is a man, not a robot", "Man", MAN, False),
        ("Engine revving", "Engine revving repeatedly", ["Engine revving repeatedly", "Car horn"], False),
        ("21.2 s", "21.2s", ["21.2s", "24.4s"], False),
        ("21.2", "21.2s", ["21.2s", "24.4s"], False),
        # Empty and token-less predictions are wrong.
        ("", "Man", MAN, False),
        ("  ...  ", "Man", MAN, False),
        # Case and punctuation do not matter; word sets do.
        ("MAN!!", "Man", MAN, True),
        ("Woman", "Man", MAN, False),  # 'man' is not a word of 'woman'
        # "(A) Man" fails once another choice contains the word "a".
        ("(A) Man", "Man", ["Man", "A woman"], False),
        # Words shared with the answer do not count against it.
        ("a man", "A man", ["A man", "A woman"], True),
        ("man", "A man", ["A man", "A woman"], False),  # every answer word is required
        # A choice with exactly the answer's word set is ignored.
        ("barking dog", "Dog barking", ["Dog barking", "barking dog", "Cat"], True),
        # Underscores are word characters.
        ("man_like", "Man", MAN, False),
        # Non-ASCII words.
        ("Café", "café", ["café", "bar"], True),
    ],
)
def test_string_match(prediction, answer, choices, expected):
    assert string_match(answer, prediction, choices) is expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("<answer>Man</answer>", "Man"),
        ("  <answer> Man </answer> because", "Man"),
        ("<answer>Cat</answer><answer>Dog</answer>", "Cat"),
        ("<answer>A\nB</answer>", "<answer>A\nB</answer>"),  # no DOTALL: falls back to the raw output
        ("<ANSWER>Man</ANSWER>", "<ANSWER>Man</ANSWER>"),  # case-sensitive tags
        ("  plain text \n", "plain text"),
        ("<answer></answer>", ""),
    ],
)
def test_extract_answer(output, expected):
    assert extract_answer(output) == expected


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("A", "A"),
        ("B.", "B"),
        ("  C\n", "C"),
        ("The answer is D.", "D"),  # second-to-last character
        ("The answer is D", None),  # last character is not looked at
        ("(C)", "C"),
        ("Answer: D", "A"),  # the official parser reads the first character first
        ("b", None),  # lower case is not a letter to it
        ("E", None),
        ("The\nanswer is B.", "B"),  # newlines removed before parsing
        ("", None),
    ],
)
def test_mmsu_letter(response, letter):
    assert mmsu_letter(response) == letter
