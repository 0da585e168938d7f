"""Differential tests: generated patterns and strings, Python's ``re`` as the oracle.

* ``DFA.fullmatch`` agrees with ``re.fullmatch`` on structured samples, mutations, random strings,
  and on strings drawn by walking the DFA itself (which also must be valid UTF-8);
* ``DFA.is_viable`` agrees with the ``regex`` package's partial matching, on patterns where that
  package reads classes as ``re`` does (no case folding; the alphabet avoids the characters where
  their ``\\w \\d \\s`` differ) - checked per string before comparing;
* the minimized DFA accepts the same language as the unminimized one (exact product check);
* invalid generated patterns raise :class:`RegexSyntaxError` exactly when ``re`` refuses them.
"""

import functools
import random
import re
import signal

import numpy as np
import pytest
import regex
from hypothesis import HealthCheck, assume, given, reject, settings
from hypothesis import strategies as st

from regexlm.automata import compile_regex
from regexlm.errors import PatternTooComplexError, RegexSyntaxError
from tests.strategies import pattern_cases


def example_budget(seconds: float = 3.0):
    """Reject an example that runs longer than ``seconds`` (wall clock).

    Python's ``re`` is a backtracking matcher: on some generated patterns (nested counted repeats)
    a failing match takes exponential time. The oracle cannot answer those in reasonable time,
    so the example is discarded rather than stalling the suite. ``re`` checks for signals while
    matching, so the alarm interrupts it.
    """

    def decorate(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            def on_alarm(signum, frame):
                reject()

            old = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, seconds)
            try:
                return test(*args, **kwargs)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old)

        return run

    return decorate


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# Deterministic limits (no clock): generated patterns over Unicode classes occasionally need
# more states than is reasonable to build in a test; those examples are discarded.
LIMITS = {"max_states": 4000, "timeout": None}


def _compile_both(pattern: str, **kwargs):
    """(re pattern, DFA) or None after checking both refuse an invalid pattern alike."""
    try:
        compiled = re.compile(pattern)
    except re.error:
        with pytest.raises(RegexSyntaxError):
            compile_regex(pattern)
        return None
    try:
        return compiled, compile_regex(pattern, **LIMITS, **kwargs)
    except PatternTooComplexError:
        assume(False)


def dfa_walks(dfa, rng: random.Random, count: int = 8, max_len: int = 16) -> list[bytes]:
    """Byte strings the DFA accepts, by random walks over live transitions."""
    full = dfa.transitions()
    out = []
    if dfa.is_empty:
        return out
    for _ in range(count):
        s, data = dfa.start, bytearray()
        for _ in range(max_len):
            if dfa.is_match(s) and rng.random() < 0.3:
                break
            live = np.flatnonzero(full[s] != 0)
            if len(live) == 0:
                break
            b = int(rng.choice(live.tolist()))
            data.append(b)
            s = int(full[s, b])
        if dfa.is_match(s):
            out.append(bytes(data))
    return out


@SETTINGS
@given(pattern_cases(), st.randoms(use_true_random=False))
@example_budget()
def test_fullmatch_agrees_with_re(case, rng):
    pattern, strings = case
    both = _compile_both(pattern)
    if both is None:
        return
    compiled, dfa = both
    for s in strings:
        assert dfa.fullmatch(s) == (compiled.fullmatch(s) is not None), (pattern, s)
        assert dfa.fullmatch(s.encode()) == (compiled.fullmatch(s) is not None), (pattern, s)
    for data in dfa_walks(dfa, rng):
        text = data.decode("utf-8")  # the DFA only accepts valid UTF-8
        assert compiled.fullmatch(text) is not None, (pattern, text)


def distances_to_match(dfa) -> np.ndarray:
    """Fewest bytes from each state to a match (a large number where none), int64[S]."""
    full = dfa.transitions()
    big = 1 << 40
    dist = np.where(dfa.accept >= 0, 0, big).astype(np.int64)
    while True:
        new = np.minimum(dist, dist[full].min(axis=1) + 1)
        new[0] = big
        if (new == dist).all():
            return dist
        dist = new


def shortest_completion(dfa, state: int, dist: np.ndarray) -> bytes | None:
    """A shortest byte string leading from ``state`` to a match, None if there is none."""
    full = dfa.transitions()
    if dist[state] >= 1 << 40:
        return None
    out = bytearray()
    while dist[state] > 0:
        b = int(np.argmin(dist[full[state]]))
        out.append(b)
        state = int(full[state, b])
    return bytes(out)


def _some_completion_matches(compiled, prefix: str, alphabet: str) -> bool:
    if compiled.fullmatch(prefix):
        return True
    return any(compiled.fullmatch(prefix + a + b) for a in alphabet for b in ["", *alphabet])


SHORT_ALPHABET = "ab0_ \n.é日"


def _check_viability_witnesses(pattern, compiled, dfa, strings) -> None:
    """Viable prefixes have a completion (the DFA's own shortest one, checked by ``re``); the
    first non-viable prefix of each string has no short completion (checked by ``re``)."""
    dist = distances_to_match(dfa)
    for s in strings:
        for k in range(len(s) + 1):
            prefix = s[:k]
            if dfa.is_viable(prefix):
                tail = shortest_completion(dfa, dfa.run(prefix.encode()), dist)
                assert tail is not None, (pattern, prefix)
                text = prefix + tail.decode("utf-8")
                assert compiled.fullmatch(text), (pattern, prefix, text)
            else:
                found = _some_completion_matches(compiled, prefix, SHORT_ALPHABET)
                assert not found, (pattern, prefix)
                break


@SETTINGS
@given(pattern_cases(case_insensitive=False, anchors=False))
@example_budget()
def test_is_viable_agrees_with_regex_partial(case):
    r"""On patterns without assertions (where partial matching is well defined) and strings the
    ``regex`` package reads as ``re`` does, ``is_viable`` equals ``regex``'s partial fullmatch.

    ``regex`` reports a partial match whenever an attempt reaches the end of the text, even when
    nothing could follow (an empty class such as ``[^\w\W]``); there no short completion may
    exist either."""
    pattern, strings = case
    both = _compile_both(pattern)
    if both is None:
        return
    compiled, dfa = both
    other = regex.compile(pattern)
    for s in strings:
        if (other.fullmatch(s) is None) != (compiled.fullmatch(s) is None):
            continue  # the regex package reads this string differently from re
        for k in range(len(s) + 1):
            prefix = s[:k]
            viable = dfa.is_viable(prefix)
            partial = other.fullmatch(prefix, partial=True) is not None
            if viable or not partial:
                assert viable == partial, (pattern, prefix)
            else:
                found = _some_completion_matches(compiled, prefix, SHORT_ALPHABET)
                assert not found, (pattern, prefix)


@SETTINGS
@given(pattern_cases())
@example_budget()
def test_is_viable_has_witnesses(case):
    """With every construct and flag: viability is confirmed by ``re`` on completions."""
    pattern, strings = case
    both = _compile_both(pattern)
    if both is None:
        return
    compiled, dfa = both
    _check_viability_witnesses(pattern, compiled, dfa, strings)


def _representative_bytes(*dfas) -> list[int]:
    """One byte per cell of the common refinement of the DFAs' byte classes."""
    seen = {}
    for b in range(256):
        seen.setdefault(tuple(int(d.byte_classes[b]) for d in dfas), b)
    return sorted(seen.values())


def equivalent(a, b) -> bool:
    """Whether two DFAs accept the same byte strings with the same pattern index (product BFS)."""
    reps = _representative_bytes(a, b)
    ta, tb = a.transitions()[:, reps].tolist(), b.transitions()[:, reps].tolist()
    seen = {(a.start, b.start)}
    todo = [(a.start, b.start)]
    while todo:
        s, t = todo.pop()
        if a.match_index(s) != b.match_index(t):
            return False
        for pair in zip(ta[s], tb[t], strict=True):
            if pair not in seen:
                seen.add(pair)
                todo.append(pair)
    return True


@SETTINGS
@given(pattern_cases(n=3))
@example_budget()
def test_minimized_equals_unminimized(case):
    pattern, _ = case
    both = _compile_both(pattern, minimize=False)
    if both is None:
        return
    big = both[1]
    small = compile_regex(pattern, **LIMITS)
    assert small.num_states <= big.num_states
    assert equivalent(small, big), pattern
    assert small.num_states == naive_minimal_size(big), pattern


def naive_minimal_size(dfa) -> int:
    """States of the minimal DFA, by plain Moore refinement (an independent reference)."""
    rows = dfa.table.tolist()  # byte classes suffice: bytes of one class behave alike
    block = list(dfa.accept.tolist())
    while True:
        sigs = {}
        new = [
            sigs.setdefault((block[s], *(block[t] for t in row)), len(sigs))
            for s, row in enumerate(rows)
        ]
        if len(sigs) == len(set(block)):
            return len(sigs)
        block = new


@settings(max_examples=150, deadline=None)
@given(st.lists(pattern_cases(n=12), min_size=2, max_size=3))
@example_budget()
def test_pattern_lists_report_lowest_index(cases):
    patterns = [p for p, _ in cases]
    try:
        compiled = [re.compile(p) for p in patterns]
    except re.error:
        return
    try:
        dfa = compile_regex(patterns, **LIMITS)
    except PatternTooComplexError:
        assume(False)
    for _, strings in cases:
        for s in strings:
            matches = [i for i, c in enumerate(compiled) if c.fullmatch(s)]
            assert dfa.fullmatch_index(s) == (matches[0] if matches else -1), (patterns, s)


@SETTINGS
@given(pattern_cases(n=3))
@example_budget()
def test_moore_and_hopcroft_give_the_same_minimal_dfa(case):
    """Both minimization paths (Moore's rounds for big tables, Hopcroft for small) agree."""
    from regexlm.automata import minimize as mz
    from regexlm.automata.limits import Deadline

    pattern, _ = case
    both = _compile_both(pattern, minimize=False)
    if both is None:
        return
    dfa = both[1]
    table, accept = np.asarray(dfa.table), np.asarray(dfa.accept)
    initial = mz.initial_partition(table, accept)
    by_moore, converged = mz.moore(table, initial, Deadline(None), max_rounds=10**6)
    assert converged
    by_hopcroft = mz.hopcroft(table, accept, Deadline(None), initial=initial)
    a = mz.renumber(table, accept, dfa.start, by_moore)
    b = mz.renumber(table, accept, dfa.start, by_hopcroft)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2], pattern


@pytest.mark.parametrize("in_c", [False, True], ids=["python-cache", "c-cache"])
@SETTINGS
@given(pattern_cases(), st.randoms(use_true_random=False))
@example_budget()
def test_lazy_dfa_agrees_with_re_and_the_eager_dfa(in_c, case, rng):
    """The lazy automaton, with its state cache in Python or in C, accepts what ``re``
    accepts, is viable exactly where the eager DFA is, and its byte distances are the eager
    DFA's shortest completions, state by state."""
    from regexlm.automata import compile_lazy

    pattern, strings = case
    both = _compile_both(pattern)
    if both is None:
        return
    compiled, dfa = both
    lazy = compile_lazy(pattern, timeout=None, native=in_c)
    dist = distances_to_match(dfa)
    for s in strings:
        assert lazy.fullmatch(s) == (compiled.fullmatch(s) is not None), (pattern, s)
        for k in range(len(s) + 1):
            data = s[:k].encode()
            assert lazy.is_viable(data) == dfa.is_viable(data), (pattern, s[:k])
            q, e = lazy.run(data), dfa.run(data)
            if e:
                assert lazy.byte_distance(q) == dist[e], (pattern, s[:k])
    for data in dfa_walks(dfa, rng):
        assert lazy.fullmatch(data), (pattern, data)
