"""The character NFA: trimming, and the shortcut that skips it when nothing can be dead.

``trim`` returns an NFA straight from the Thompson construction untouched when every character
set in it has an encodable member (``all_live``). The claim behind that shortcut - every state
then reaches a match - is checked here by a backward search of its own over the NFA's edges,
on generated patterns and on the constructs that make states dead or transitions unusable
(empty classes, sets of lone surrogates, assertions).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings

from regexlm.automata.limits import Deadline, Limits
from regexlm.automata.nfa import build_nfa, remove_looks, trim
from regexlm.automata.parse import parse
from regexlm.errors import RegexError
from tests.strategies import regex_patterns


def usable(chars) -> bool:
    """Whether a set holds a character with a UTF-8 encoding (anything but a lone surrogate)."""
    return any(not (0xD800 <= lo and hi <= 0xDFFF) for lo, hi in chars)


def live_states(nfa) -> set[int]:
    """States from which a match is reachable, by epsilon moves and usable characters."""
    into: dict[int, list[int]] = {}
    for q in range(len(nfa.match)):
        for t in nfa.eps[q]:
            into.setdefault(t, []).append(q)
        for chars, t in nfa.edges[q]:
            if usable(chars):
                into.setdefault(t, []).append(q)
    live = {q for q, m in enumerate(nfa.match) if m >= 0}
    stack = list(live)
    while stack:
        for q in into.get(stack.pop(), ()):
            if q not in live:
                live.add(q)
                stack.append(q)
    return live


def built(pattern: str):
    return build_nfa([parse(pattern)], Limits())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regex_patterns())
def test_a_thompson_nfa_marked_all_live_has_no_dead_state(pattern):
    try:
        nfa = built(pattern)
    except RegexError:
        return
    if nfa.all_live:
        assert live_states(nfa) == set(range(len(nfa.match)))
        assert trim(nfa) is nfa


@pytest.mark.parametrize(
    "pattern",
    [r"a[^\s\S]b|c", r"x[\ud800-\udfff]?y", r"(ab|[^\W\w]b)+", "[\ud800]|ok"],
)
def test_dead_states_are_found_and_trimmed(pattern):
    nfa = built(pattern)
    assert not nfa.all_live
    assert live_states(nfa) != set(range(len(nfa.match))) or any(
        not usable(chars) for row in nfa.edges for chars, _ in row
    )
    trimmed = trim(nfa)
    live = live_states(trimmed)
    for q in range(len(trimmed.match)):  # no transition is unusable or leads to a dead state
        assert all(t in live for t in trimmed.eps[q])
        assert all(t in live and usable(chars) for chars, t in trimmed.edges[q])


def test_an_nfa_without_its_assertions_is_always_trimmed():
    nfa = built(r"a\bb|a\b c")  # the first branch can never match
    assert not nfa.all_live
    removed = remove_looks(nfa, Limits(), Deadline(None))
    assert not removed.all_live
    trimmed = trim(removed)
    live = live_states(trimmed)
    assert all(t in live for q in range(len(trimmed.match)) for t in trimmed.eps[q])


def test_a_finished_nfa_holds_its_transitions_in_tuples():
    # an automaton keeps its NFA: a state with no transitions of a kind holds the shared empty
    # tuple, not a list of its own
    from regexlm.automata import compile_lazy

    nfa = compile_lazy(r"[a-z]{1,20}@(com|org)", native=False)._sc.nfa
    for table in (nfa.eps, nfa.edges, nfa.looks):
        assert all(type(row) is tuple for row in table)
        assert len({id(row) for row in table if not row}) <= 1
    assert sum(map(len, nfa.edges)) > 20 and sum(map(len, nfa.eps)) > 20


@pytest.mark.parametrize(
    "pattern", [r"(?:){0,1000}x", r"(?:(?:){0,3}){2,9}x?", r"a(?:|(?:){5,})*b"]
)
def test_repeats_of_items_that_add_nothing_match_as_re_does_and_stay_small(pattern):
    from regexlm.automata import compile_lazy

    automaton = compile_lazy(pattern, native=False)
    nfa = automaton._sc.nfa
    assert nfa.num_states + sum(map(len, nfa.eps)) < 60  # nothing per optional copy of nothing
    for text in ["", "x", "xx", "ab", "a", "b", "aab"]:
        assert automaton.fullmatch(text) == (re.fullmatch(pattern, text) is not None), text
