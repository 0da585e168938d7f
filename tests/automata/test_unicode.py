"""Classes and case folding behave exactly as in Python's ``re``, code point by code point.

The class tables are read off ``re``; these tests check the compiled DFA, end to end, at the
edges of every range of every class (where an off-by-one would show), on random code points and,
for case folding, on every character whose case-insensitive behaviour can differ.
"""

import random
import re

import pytest

from regexlm.automata import compile_regex
from regexlm.automata import unicode as uni

CLASS_PATTERNS = [
    r"\w", r"\W", r"\d", r"\D", r"\s", r"\S",
    r"(?a)\w", r"(?a)\W", r"(?a)\d", r"(?a)\D", r"(?a)\s", r"(?a)\S",
    r".", r"(?s).", r"[^a]", r"[\w\s]", r"[^\d\s]", r"[\W\d]", r"[^\W_]",
]  # fmt: skip

NOT_SURROGATE = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def _edges(ranges) -> set[int]:
    out = set()
    for lo, hi in ranges:
        out.update({lo - 1, lo, lo + 1, hi - 1, hi, hi + 1})
    return {c for c in out if 0 <= c <= 0x10FFFF and not 0xD800 <= c <= 0xDFFF}


UTF8_EDGES = {0, 0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF, 0x10000, 0x10FFFF}


@pytest.mark.parametrize("pattern", CLASS_PATTERNS)
def test_class_edges_and_samples(pattern):
    dfa = compile_regex(pattern)
    compiled = re.compile(pattern)
    points = UTF8_EDGES | set(random.Random(pattern).sample(NOT_SURROGATE, 3000))
    for table in (uni.unicode_word(), uni.unicode_digit(), uni.unicode_space(), uni.ASCII_WORD):
        points |= _edges(table)
    for c in sorted(points):
        ch = chr(c)
        assert dfa.fullmatch(ch) == (compiled.fullmatch(ch) is not None), (pattern, hex(c))


def test_category_tables_match_re_on_every_code_point():
    text = "".join(map(chr, NOT_SURROGATE))
    for pattern, table in [(r"\w", uni.unicode_word()), (r"\d", uni.unicode_digit()),
                           (r"\s", uni.unicode_space())]:  # fmt: skip
        got = {c for lo, hi in table for c in range(lo, hi + 1) if not 0xD800 <= c <= 0xDFFF}
        want = {ord(m.group()) for m in re.finditer(pattern, text)}
        assert got == want, pattern


def _cased_chars() -> list[str]:
    _, q_text = uni._case_sensitive_chars()
    return list(q_text)


SPECIAL = ["k", "K", "\u212a", "s", "S", "\u017f", "i", "I", "\u0130", "\u0131", "ß", "ẞ",
           "σ", "ς", "Σ", "µ", "μ", "Μ", "ǅ", "ﬀ", "𐐀", "𐐨", "é", "É"]  # fmt: skip


@pytest.mark.parametrize("ascii_only", [False, True])
def test_case_folded_literals(ascii_only):
    cased = _cased_chars()
    universe = sorted(set(cased) | set(map(chr, range(0x80))))
    literals = SPECIAL + random.Random(1).sample(cased, 60)
    flags = "(?ai)" if ascii_only else "(?i)"
    for lit in literals:
        pattern = flags + re.escape(lit)
        dfa = compile_regex(pattern)
        compiled = re.compile(pattern)
        for ch in universe:
            assert dfa.fullmatch(ch) == (compiled.fullmatch(ch) is not None), (pattern, ch)


FOLDED_CLASSES = [
    r"(?i)[a-z]", r"(?i)[^k]", r"(?i)[k-s]", r"(?i)[\W\d]", r"(?i)[^\w]", r"(?i)[ſ]",
    r"(?i)[\u0100-\u017f]", r"(?i)[^\u0130]", r"(?i)[ß]", r"(?ai)[k\d]", r"(?ai)[^s]",
    r"(?i)[\U00010400-\U0001044f]", r"(?i)[Σ-Ϋ]", r"(?i)[A-Z\s]", r"(?i)\W", r"(?i)[^\Wk]",
]  # fmt: skip


@pytest.mark.parametrize("pattern", FOLDED_CLASSES)
def test_case_folded_classes(pattern):
    dfa = compile_regex(pattern)
    compiled = re.compile(pattern)
    universe = set(_cased_chars()) | set(map(chr, range(0x80)))
    universe |= set(map(chr, random.Random(pattern).sample(NOT_SURROGATE, 2000)))
    for ch in sorted(universe):
        assert dfa.fullmatch(ch) == (compiled.fullmatch(ch) is not None), (pattern, ch)


def test_named_special_cases():
    assert compile_regex("(?i)k").fullmatch("\u212a")  # Kelvin sign
    assert compile_regex("(?i)s").fullmatch("\u017f")  # long s
    assert compile_regex("(?i)\u0130").fullmatch("i") == bool(re.fullmatch("(?i)\u0130", "i"))
    assert not compile_regex("(?ai)k").fullmatch("\u212a")
    assert compile_regex("(?i)straße").fullmatch("STRAẞE") == bool(
        re.fullmatch("(?i)straße", "STRAẞE")
    )
