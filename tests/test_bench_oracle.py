"""The benchmark's text oracle (bench/text_oracle.py): ``re``'s classes spelled out for
``regex``, and masks judged on text."""

from __future__ import annotations

import re

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.text_oracle import TextOracle, for_regex_module

CLASS_PATTERNS = [
    r"\w",
    r"\W",
    r"\d",
    r"\D",
    r"\s",
    r"\S",
    r"[\w-]",
    r"[^\w]",
    r"[^\W\d_]",
    r"[]\d]",
    r"[^]\s]",
    r"[\d\s]x?",
    r"\\w",
    r"(?i)[\wé]",
]


@settings(max_examples=400, deadline=None)
@given(pattern=st.sampled_from(CLASS_PATTERNS), char=st.characters(), more=st.sampled_from("x]\\"))
def test_spelled_out_classes_match_what_re_matches(pattern, char, more):
    spelled = for_regex_module(pattern)
    for text in (char, char + more):
        assert (regex.fullmatch(spelled, text) is None) == (re.fullmatch(pattern, text) is None)


def test_the_flags_that_change_the_escapes_are_refused():
    with pytest.raises(ValueError, match="ASCII"):
        for_regex_module(r"(?a)\w+")


def _byte_vocab(extra: list[bytes]) -> list[bytes]:
    return [bytes([b]) for b in range(256)] + extra + [b""]  # the last id is end-of-sequence


def _oracle(pattern: str, extra: list[bytes]) -> tuple[TextOracle, list[bytes]]:
    tokens = _byte_vocab(extra)
    usable = np.ones(len(tokens), dtype=bool)
    usable[-1] = False
    return TextOracle(pattern, tokens, usable, [len(tokens) - 1]), tokens


def test_masks_follow_the_text_and_eos_follows_fullmatch():
    oracle, tokens = _oracle(r"a[bc]", [b"ab", b"bc", b"b"])
    ids = {t: i for i, t in reversed(list(enumerate(tokens)))}
    allowed, checked = oracle.mask(b"a")
    assert checked[:128].all() and checked[256:].all()  # lone lead bytes may become text
    assert allowed[ids[b"b"]] and allowed[ids[b"c"]] and allowed[256 + 2]  # the second "b"
    assert not allowed[ids[b"bc"]] and not allowed[ids[b"a"]] and not allowed[-1]
    allowed, _ = oracle.mask(b"ab")
    assert allowed[-1] and not allowed[:-1].any()


def test_unfinished_characters_are_unchecked_unless_already_hopeless():
    oracle, tokens = _oracle(r"é+", [b"\xc3\xa9", b"x\xc3"])
    allowed, checked = oracle.mask(b"")
    assert not checked[0xC3]  # could become "é"
    assert checked[256] and allowed[256]  # "é" itself
    assert checked[257] and not allowed[257]  # "x" is already wrong
    assert checked[0xFF] and not allowed[0xFF]  # never UTF-8
    allowed, checked = oracle.mask(b"\xc3")  # half a character pending
    assert checked[0xA9] and allowed[0xA9] and checked[0xA8] and not allowed[0xA8]
    assert checked[-1] and not allowed[-1]


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet="ab1 ", max_size=6), pattern=st.sampled_from([r"[ab]+1?", r"a b\d"]))
def test_each_allowed_token_keeps_a_prefix_of_a_match(text, pattern):
    oracle, tokens = _oracle(pattern, [b"ab", b" b", b"1a"])
    allowed, checked = oracle.mask(text.encode())
    assert checked[:128].all()
    for i in np.flatnonzero(allowed[:-1]):
        candidate = text + tokens[i].decode()
        assert regex.fullmatch(pattern, candidate, partial=True) is not None
    viable_text = regex.fullmatch(pattern, text, partial=True) is not None
    assert allowed[:-1].any() or not viable_text or re.fullmatch(pattern, text)
    assert allowed[-1] == (re.fullmatch(pattern, text) is not None)
