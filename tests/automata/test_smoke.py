"""Common patterns compile and agree with ``re.fullmatch`` on hand-picked strings."""

import re

import numpy as np
import pytest

from regexlm.automata import DFA, compile_regex

CASES = [
    (r"\d{4}-\d{2}-\d{2}", ["2024-05-17", "2024-5-17", "", "2024-05-170", "٢٠٢٤-05-17"]),
    (r"[a-z]+@[a-z]+\.com", ["a@b.com", "ab@cd.com", "@b.com", "a@b.co", "a@b.comm"]),
    (r"a|b*", ["", "a", "b", "bbb", "ab", "aa"]),
    (r".*prompt$", ["prompt", "xx prompt", "prompt\n", "prompts"]),
    (r"(?s).", ["\n", "x", "é", "", "xy"]),
    (r"\bfoo\b", ["foo", "fo", "foo "]),
    (r"(?i)straße", ["STRASSE", "Straße", "STRAẞE", "strasse"]),
]


@pytest.mark.parametrize("pattern,strings", CASES)
def test_agrees_with_re(pattern, strings):
    dfa = compile_regex(pattern)
    for s in strings:
        assert dfa.fullmatch(s) == (re.fullmatch(pattern, s) is not None), (pattern, s)


def test_contract_attributes():
    dfa = compile_regex(r"[a-c]x|d")
    assert isinstance(dfa, DFA)
    assert dfa.DEAD == 0 and dfa.dead == 0
    assert dfa.byte_classes.dtype == np.uint8 and dfa.byte_classes.shape == (256,)
    assert dfa.table.dtype == np.int32
    assert dfa.table.shape == (dfa.num_states, dfa.num_byte_classes)
    assert dfa.accept.dtype == np.int32 and dfa.accept.shape == (dfa.num_states,)
    assert dfa.patterns == (r"[a-c]x|d",)
    assert (dfa.table[0] == 0).all() and dfa.accept[0] == -1
    full = dfa.transitions()
    assert full.shape == (dfa.num_states, 256) and full.dtype == np.int32
    s = dfa.next(dfa.start, ord("b"))
    assert not dfa.is_dead(s) and not dfa.is_match(s)
    s = dfa.next(s, ord("x"))
    assert dfa.is_match(s) and dfa.match_index(s) == 0
    assert dfa.is_dead(dfa.next(s, ord("x")))
    assert not dfa.is_empty
    with pytest.raises(ValueError):
        dfa.table[0, 0] = 1
