"""The DFA contract: arrays, dead state, co-reachability, multiple patterns, anchors."""

import re

import numpy as np
import pytest

from regexlm.automata import DFA, compile_regex

PATTERNS = [r"\d{4}-\d{2}-\d{2}", r"[a-z]+@[a-z]+\.com", r"(?i)\bk\w*\b$", r"a|b*", r".*", r"",
            r"(?m)^a$\n^b$", r"[^\W\d]+", r"x{3,5}?", "日本|😀+"]  # fmt: skip


@pytest.mark.parametrize("pattern", PATTERNS)
def test_arrays_follow_the_contract(pattern):
    dfa = compile_regex(pattern)
    assert isinstance(dfa, DFA) and dfa.patterns == (pattern,)
    S, C = dfa.num_states, dfa.num_byte_classes
    assert dfa.table.dtype == np.int32 and dfa.table.shape == (S, C)
    assert dfa.accept.dtype == np.int32 and dfa.accept.shape == (S,)
    assert dfa.byte_classes.dtype == np.uint8 and dfa.byte_classes.shape == (256,)
    assert set(np.unique(dfa.byte_classes)) == set(range(C))
    assert ((dfa.table >= 0) & (dfa.table < S)).all()
    assert (dfa.table[0] == 0).all() and dfa.accept[0] == -1 and dfa.is_dead(0)
    assert set(np.unique(dfa.accept)) <= {-1, 0}
    full = dfa.transitions()
    assert full.shape == (S, 256) and full.dtype == np.int32
    for b in range(256):
        assert (full[:, b] == dfa.table[:, dfa.byte_classes[b]]).all()
        assert dfa.next(dfa.start, b) == full[dfa.start, b]
    # Byte classes are as coarse as possible: no two classes have equal columns.
    assert len({tuple(col) for col in dfa.table.T.tolist()}) == C
    for arr in (dfa.table, dfa.accept, dfa.byte_classes):
        assert not arr.flags.writeable


@pytest.mark.parametrize("pattern", PATTERNS)
def test_every_live_state_reaches_a_match(pattern):
    dfa = compile_regex(pattern)
    full = dfa.transitions()
    can = dfa.accept >= 0
    while True:
        grown = can | can[full].any(axis=1)
        grown[0] = False
        if (grown == can).all():
            break
        can = grown
    assert can[1:].all() or dfa.is_empty
    # and every state is reachable from the start
    seen, todo = {dfa.start}, [dfa.start]
    while todo:
        for t in set(full[todo.pop()].tolist()):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    assert seen | {0} == set(range(dfa.num_states))


def test_empty_language():
    for pattern in [r"[^\s\S]", r"a\Zb", r"a^", r"(?a)\bx\B", r"$a"]:
        dfa = compile_regex(pattern)
        assert dfa.is_empty and dfa.start == 0 and dfa.num_states == 1, pattern
        assert not dfa.is_viable("") and not dfa.fullmatch("")
    assert not compile_regex("").is_empty and compile_regex("").fullmatch("")


ANCHOR_CASES = [
    ("a$", ["a", "a\n"]),
    ("a$\n", ["a\n", "a\n\n"]),
    ("a$\n$", ["a\n"]),
    ("a\\Z", ["a", "a\n"]),
    ("(?m)a$", ["a", "a\n"]),
    ("(?m)a$\nb", ["a\nb"]),
    ("a$\nb", ["a\nb"]),
    ("(?m)^a", ["a"]),
    ("x\n^a", ["x\na"]),
    ("(?m)x\n^a", ["x\na"]),
    ("\\Aa|b\\A", ["a", "b"]),
    ("\\ba\\b", ["a"]),
    ("a\\b\\B", ["a"]),
    ("\\B", [""]),
    ("\\b", [""]),
    ("(?a)é\\b", ["é"]),
    ("é\\b", ["é"]),
    ("(?a)\\bé", ["é"]),
    ("a\\b-", ["a-"]),
    ("a\\Bb", ["ab"]),
    ("a\\bb", ["ab"]),
    ("(?m)$\n^$\n^", ["\n\n"]),
    ("$\\n*", ["", "\n", "\n\n"]),
]


@pytest.mark.parametrize("pattern,strings", ANCHOR_CASES)
def test_anchors_as_python(pattern, strings):
    dfa = compile_regex(pattern)
    for s in strings:
        assert dfa.fullmatch(s) == (re.fullmatch(pattern, s) is not None), (pattern, s)


def test_dollar_does_not_match_before_final_newline_under_fullmatch():
    assert re.fullmatch("a$", "a\n") is None
    assert not compile_regex("a$").fullmatch("a\n")
    assert compile_regex("a$\n").fullmatch("a\n")


def test_multiple_patterns_report_lowest_index():
    dfa = compile_regex([r"\d+", r"[0-9a-f]+", r"abc"])
    assert dfa.patterns == (r"\d+", r"[0-9a-f]+", r"abc")
    assert dfa.fullmatch_index("123") == 0
    assert dfa.fullmatch_index("12ab") == 1
    assert dfa.fullmatch_index("abc") == 1
    assert dfa.fullmatch_index("xyz") == -1
    s = dfa.run(b"ab")
    assert dfa.match_index(s) == 1 and dfa.is_match(s)
    assert dfa.match_index(dfa.run(b"abc")) == 1
    assert compile_regex(["abc", "a[a-c]c"]).fullmatch_index("abc") == 0


def test_is_viable_on_prefixes_and_bytes():
    dfa = compile_regex(r"日本\d")
    assert dfa.is_viable("") and dfa.is_viable("日") and dfa.is_viable("日本")
    data = "日本".encode()
    for k in range(len(data) + 1):
        assert dfa.is_viable(data[:k])  # stops inside a character
    assert not dfa.is_viable("日x") and not dfa.is_viable(b"\xe6\x97\xa6x")
    assert not dfa.is_viable(b"\xe6\x98")  # the start of a different character
    assert dfa.fullmatch("日本7") and dfa.fullmatch("日本٣".encode())
    assert not dfa.fullmatch("日本")


def test_lazy_quantifiers_have_the_greedy_language():
    for lazy, greedy in [
        ("a*?b", "a*b"),
        ("(ab)+?", "(ab)+"),
        ("x{2,4}?", "x{2,4}"),
        ("a??", "a?"),
    ]:
        a, b = compile_regex(lazy), compile_regex(greedy)
        assert a.num_states == b.num_states
        assert (a.table == b.table).all() and (a.accept == b.accept).all()


def _all_strings(alphabet: str, max_len: int):
    out = [""]
    for _ in range(max_len):
        out += [s + c for s in out if len(s) == len(out[-1]) for c in alphabet]
    return sorted(set(out))


@pytest.mark.parametrize("flags", ["", "(?m)", "(?a)", "(?ma)"])
@pytest.mark.parametrize("anchor", ["^", "$", r"\A", r"\Z", r"\b", r"\B"])
def test_anchors_exhaustively_on_short_strings(flags, anchor):
    strings = _all_strings("aé \n", 4)
    for pattern in [
        flags + r"[aé \n]*" + anchor + r"[aé \n]*",
        flags + r"(?:a|\n)*" + anchor + r"(?:é|\n)?" + anchor + r"[ a]*",
        flags + anchor + r"(?:" + anchor + r"[aé\n]|\s)*" + anchor,
    ]:
        dfa = compile_regex(pattern)
        compiled = re.compile(pattern)
        for s in strings:
            assert dfa.fullmatch(s) == (compiled.fullmatch(s) is not None), (pattern, s)
