"""DPR-compatible answer matching (docs/method.md#evaluation), so top-k numbers are comparable with published ones.

A port, in our own code, of `has_answer` and `SimpleTokenizer` from facebookresearch/DPR
(dpr/data/qa_validation.py and dpr/utils/tokenizers.py at 10ca720), which took the tokenizer from DrQA.
Behaviours kept on purpose, because published numbers depend on them:
- text and answers are NFD-normalised; tokens are runs of letters/digits/marks or single non-space characters;
- string mode matches the lower-cased answer tokens as a contiguous run of the passage tokens (title not used),
  so an answer with no tokens at all (e.g. "" or "  ") matches every passage, as in DPR;
- regex mode compiles each answer with the `regex` module (IGNORECASE | UNICODE | MULTILINE) and searches the
  NFD text; a pattern that does not compile matches nothing.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Sequence

import regex

_TOKEN = regex.compile(
    r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])",
    flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE,
)


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def words(text: str) -> tuple[str, ...]:
    """DPR SimpleTokenizer tokens of the NFD text, lower-cased."""
    return tuple(match.group().lower() for match in _TOKEN.finditer(_nfd(text)))


@lru_cache(maxsize=200_000)
def _joined(text: str) -> str:
    # Tokens never hold whitespace (\p{Z}) or controls (\p{C}), so " a b " occurs in " x a b y " exactly when
    # the token run (a, b) occurs in (x, a, b, y): a contiguous-sublist test done by the C substring search.
    return " " + " ".join(words(text)) + " "


def _contains_tokens(text: str, answer: str) -> bool:
    needle = words(answer)
    if not needle:  # DPR: an answer with no tokens matches everywhere (its loop compares [] == [])
        return True
    return " " + " ".join(needle) + " " in _joined(text)


def _regex_search(pattern: str, text: str) -> bool:
    try:
        compiled = regex.compile(pattern, flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)
    except Exception:  # DPR swallows every compile failure (BaseException there); so do we, short of Ctrl-C
        return False
    return compiled.search(text) is not None


def has_answer(answers: Sequence[str], text: str, mode: str = "string") -> bool:
    """True when `text` contains one of `answers` under DPR's rules (mode "string" or "regex")."""
    if mode == "string":
        return any(_contains_tokens(text, answer) for answer in answers)
    if mode == "regex":
        normalized = _nfd(text)
        return any(_regex_search(_nfd(answer), normalized) for answer in answers)
    raise ValueError(f"unknown answer match mode {mode!r}: expected 'string' or 'regex'")
