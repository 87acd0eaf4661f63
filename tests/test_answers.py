"""has_answer must return what DPR's has_answer returns (docs/method.md#evaluation); values below are worked out by hand from
DPR's rules (NFD, SimpleTokenizer tokens, lower-case, contiguous token match; regex: IGNORECASE search)."""

import pytest

from bprlab.data.answers import has_answer, words


def test_tokenizer_splits_alphanumeric_runs_and_single_symbols():
    assert words("U.S. Army's 1st—Div!") == ("u", ".", "s", ".", "army", "'", "s", "1st", "—", "div", "!")


@pytest.mark.parametrize(
    "answers, text, expected",
    [
        (["Paris"], "The capital is paris.", True),  # case-insensitive
        (["New York"], "in new  york city", True),  # whitespace does not matter between tokens
        (["York New"], "in new york city", False),  # order matters
        (["new city"], "in new york city", False),  # contiguous only
        (["ark"], "Noah's ark", True),
        (["ar"], "Noah's ark", False),  # whole tokens only, never substrings
        (["U.S."], "the U. S. army", True),  # punctuation is tokens: u . s .
        (["US"], "the U.S. army", False),
        (["1,000"], "about 1,000 people", True),
        (["1000"], "about 1,000 people", False),
        (["café"], "the cafe\u0301 opened", True),  # NFC answer, NFD text: both normalised to NFD
        (["cafe"], "the café opened", False),  # the accent is a combining mark inside the token
        (["Ærø"], "island of ærø", True),
        (["", "zzz"], "anything", True),  # DPR: an answer with no tokens matches everywhere
        (["  "], "", True),
        ([], "anything", False),
    ],
)
def test_string_mode(answers, text, expected):
    assert has_answer(answers, text) is expected


@pytest.mark.parametrize(
    "answers, text, expected",
    [
        ([r"\bparis\b"], "PARIS is big", True),  # compiled case-insensitive
        ([r"19[0-9]{2}"], "born in 1984", True),
        ([r"^Born"], "he was\nborn there", True),  # MULTILINE
        ([r"(unclosed"], "(unclosed", False),  # a pattern that does not compile matches nothing
        ([r"(unclosed", r"there"], "born there", True),
        ([r"cafe\u0301"], "café", True),  # pattern and text both NFD
        ([r"xyz"], "abc", False),
    ],
)
def test_regex_mode(answers, text, expected):
    assert has_answer(answers, text, mode="regex") is expected


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="mode"):
        has_answer(["a"], "a", mode="fuzzy")
