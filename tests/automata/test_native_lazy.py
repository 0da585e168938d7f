"""The lazy DFA's C state cache against the Python one (the reference), and against ``re``."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regexlm.automata import compile_lazy, native_lazy
from regexlm.automata.lazy import UNREACHABLE, Distances, LazyDFA
from regexlm.errors import PatternTooComplexError, RegexError
from tests.strategies import regex_patterns

ALPHABET = "ab1 _.é中😀\n"


def _pair(pattern: str):
    try:
        py = compile_lazy(pattern, timeout=None, native=False)
    except RegexError:
        return None
    return py, compile_lazy(pattern, timeout=None, native=True)


def test_the_c_cache_is_used_where_it_builds():
    assert native_lazy.available(), "the C helpers could not be built here"
    a = compile_lazy(r"\w+")
    assert isinstance(a, native_lazy.NativeLazyDFA)
    assert isinstance(compile_lazy(r"\w+", native=False), LazyDFA)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=regex_patterns(),
    texts=st.lists(st.text(ALPHABET, max_size=12), min_size=1, max_size=12),
    usable=st.sets(st.integers(0, 255), max_size=200),
    clear_after=st.integers(0, 12),
)
def test_c_and_python_caches_agree_on_every_prefix(pattern, texts, usable, clear_after):
    """Same viability, matches and byte distances (all bytes, and a random usable set) on
    every prefix, across a cache clear of the C cache in the middle."""
    pair = _pair(pattern)
    if pair is None:
        return
    py, c = pair
    ok = np.zeros(256, dtype=bool)
    ok[sorted(usable)] = True
    for i, text in enumerate(texts):
        if i == clear_after:
            c.clear()
        data = text.encode()
        for k in range(len(data) + 1):
            p, q = py.run(data[:k]), c.run(data[:k])
            assert (p == 0) == (q == 0), (pattern, data[:k])
            if p == 0:
                continue
            assert py.match_index(p) == c.match_index(q), (pattern, data[:k])
            assert py.byte_distance(p) == c.byte_distance(q), (pattern, data[:k])
            assert py.byte_distance(p, ok) == c.byte_distance(q, ok), (pattern, data[:k])
        assert c.fullmatch(text) == (re.fullmatch(pattern, text) is not None), (pattern, text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regex_patterns(), usable=st.sets(st.integers(0, 255), max_size=256))
def test_c_finds_every_nfa_states_distance_as_python_does(pattern, usable):
    """Every NFA state's fewest usable bytes to a match: the C search over edge arrays against
    the Python reference (Dial's algorithm over the NFA's own lists)."""
    try:
        c = compile_lazy(pattern, timeout=None, native=True)
    except RegexError:
        return
    for ok in (np.ones(256, dtype=bool), np.isin(np.arange(256), sorted(usable))):
        expected = Distances(c._sc, ok).state
        assert c._nfa_distances(ok).tolist() == expected, pattern


def _spelled(chars, ok: np.ndarray) -> bool:
    """Whether some character of the set (a list of code-point ranges) has a UTF-8 encoding
    whose every byte is in ``ok``: code point by code point, up to the first."""
    for lo, hi in chars:
        for c in range(lo, hi + 1):
            if 0xD800 <= c <= 0xDFFF:
                continue
            if all(ok[b] for b in chr(c).encode()):
                return True
    return False


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=regex_patterns(),
    texts=st.lists(st.text(ALPHABET, max_size=12), min_size=1, max_size=8),
    data=st.data(),
)
def test_every_label_spelled_promises_a_finite_distance_to_every_live_state(pattern, texts, data):
    """``spells_every_label`` (what lets an index leave the byte distances for later): true
    exactly when every continuation byte is usable and every character transition of the NFA
    has a character whose bytes all are, checked character by character; and when true, every
    live state on the prefixes of some texts has a finite distance in the Python automaton."""
    pair = _pair(pattern)
    if pair is None:
        return
    py, c = pair
    # bytes the pattern spells, and a few continuation and lead bytes, are left out
    candidates = sorted(set(pattern.encode()) | {0x80, 0x9F, 0xA9, 0xBF, 0xC3, 0xE4, 0xF0})
    missing = data.draw(st.sets(st.sampled_from(candidates), max_size=3))
    ok = np.ones(256, dtype=bool)
    ok[sorted(missing)] = False
    labels = [chars for row in c._sc.nfa.edges for chars, _ in row]
    expected = bool(ok[0x80:0xC0].all()) and all(_spelled(chars, ok) for chars in labels)
    assert c.spells_every_label(ok) == expected, (pattern, sorted(missing))
    assert c.spells_every_label(None)
    if not expected:
        return
    for text in texts:
        data = text.encode()
        for k in range(len(data) + 1):
            q = py.run(data[:k])
            if q != 0:
                assert py.byte_distance(q, ok) < UNREACHABLE, (pattern, data[:k])


def test_describe_can_leave_the_distances_for_later():
    c = compile_lazy(r"[a-z]+@[a-z]+\.com", timeout=None, native=True)
    states = np.array([c.start, c.run(b"a")])
    keys, match, dist = c.describe(states, distances=False)
    assert (dist == native_lazy.UNKNOWN).all()
    assert keys == c.describe(states)[0]
    assert match.tolist() == c.describe(states)[1].tolist() == [-1, -1]
    assert c.describe(states)[2].tolist() == [c.byte_distance(int(s)) for s in states]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regex_patterns(), texts=st.lists(st.text(ALPHABET, max_size=8), max_size=8))
def test_vectorized_steps_and_rows_agree_with_single_steps(pattern, texts):
    pair = _pair(pattern)
    if pair is None:
        return
    _, c = pair
    states = [c.start] + [s for s in (c.run(t.encode()) for t in texts) if s != 0]
    for s in states:
        row = c.row(s)
        assert row.shape == (c.num_byte_classes,)
        for byte in range(0, 256, 7):
            assert c.next(s, byte) == row[c.byte_classes[byte]]
        classes = np.arange(c.num_byte_classes)
        assert np.array_equal(c.step(np.full(classes.size, s), classes), row)


def test_keys_survive_a_clear_and_name_the_same_states():
    c = compile_lazy(r"(\w+\s?){1,10}", native=True)
    q = c.run("héllo wörld ".encode())
    key, distance = c.key(q), c.byte_distance(q)
    c.clear()
    assert c.epoch == 1 and c.num_states == 2  # the dead state and the start
    again = c.intern(key)
    assert c.key(again) == key
    assert c.byte_distance(again) == distance
    assert c.run(b"x", again) == c.run("héllo wörld x".encode())


def test_distances_over_restricted_bytes():
    c = compile_lazy(r"b|cc", native=True)
    only = np.zeros((3, 256), dtype=bool)
    for row, char in zip(only, "abc", strict=True):
        row[ord(char)] = True
    assert [c.byte_distance(c.start, u) for u in only] == [UNREACHABLE, 1, 2]
    assert c.byte_distance(c.start) == 1


def test_a_clear_gives_the_memory_back():
    c = compile_lazy(r"\w{1,50}", native=True)
    for n in range(1, 40):
        c.run(("é" * n).encode())
    grown = c.nbytes
    c.clear()
    assert c.nbytes < grown / 4


def test_limits_stop_the_c_cache_and_leave_it_consistent():
    c = compile_lazy(r"(.{0,20}\w{0,20}){0,40}", native=True)
    c.step_bytes = 1 << 20
    c.step_timeout = None  # the bytes, not the CPU time, whatever the machine's speed
    with pytest.raises(PatternTooComplexError) as info, c.time_limit("walking"):
        for n in range(400):
            c.run(("ab_ .é中" * 40)[: n * 3].encode())
    assert info.value.limit == "memory"
    assert c.fullmatch("ab cd") and not c.fullmatch("a\nb")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=regex_patterns(),
    texts=st.lists(st.text(ALPHABET, max_size=10), min_size=1, max_size=10),
    usable=st.sets(st.integers(0, 255), max_size=200),
)
def test_describe_gives_what_the_single_state_queries_give(pattern, texts, usable):
    pair = _pair(pattern)
    if pair is None:
        return
    _, c = pair
    ok = np.zeros(256, dtype=bool)
    ok[sorted(usable)] = True
    states = np.unique([s for s in (c.run(t.encode()) for t in texts) if s != 0] + [c.start])
    keys, match, dist = c.describe(states, ok)
    assert keys == [c.key(s) for s in states.tolist()]
    assert match.tolist() == [c.match_index(s) for s in states.tolist()]
    assert dist.tolist() == [c.byte_distance(s, ok) for s in states.tolist()]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regex_patterns(), texts=st.lists(st.text(ALPHABET, max_size=10), max_size=6))
def test_c_finds_the_epsilon_closures_python_finds(pattern, texts):
    """After whole characters a state holds NFA states only, numbered alike in both caches: C's
    sets (unions of the closures it finds) are Python's."""
    pair = _pair(pattern)
    if pair is None:
        return
    py, c = pair
    for text in ["", *texts]:
        p, q = py.start, c.start
        for ch in text:
            p, q = py.run(ch.encode(), p), c.run(ch.encode(), q)
            assert (p == 0) == (q == 0), (pattern, text)
            if p == 0:
                break
            assert np.frombuffer(c.key(q), dtype=np.int32).tolist() == sorted(py.key(p))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regex_patterns(), texts=st.lists(st.text(ALPHABET, max_size=12), max_size=6))
def test_c_holds_the_whole_nfa_once_made(pattern, texts):
    """Every row is made in C from what the automaton gave it when made: with Python's copy of
    the NFA gone (and no way to make it again), the answers are still the reference's."""
    pair = _pair(pattern)
    if pair is None:
        return
    py, c = pair
    c.byte_distance(c.start)  # the distances over every byte, given while the NFA is here
    c._sc, c._rebuild_nfa = None, None
    for text in texts:
        data = text.encode()
        for k in range(len(data) + 1):
            p, q = py.run(data[:k]), c.run(data[:k])
            assert (p == 0) == (q == 0), (pattern, data[:k])
            if p != 0:
                assert py.match_index(p) == c.match_index(q), (pattern, data[:k])
                assert py.byte_distance(p) == c.byte_distance(q), (pattern, data[:k])


def _traced_release(c) -> tuple[int, int]:
    """The bytes tracemalloc traces (it must be on) before and after letting the NFA of ``c``
    go, garbage collected at each."""
    import gc
    import tracemalloc

    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    assert c.release_nfa()
    gc.collect()
    return before, tracemalloc.get_traced_memory()[0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=regex_patterns(),
    texts=st.lists(st.text(ALPHABET, max_size=10), min_size=1, max_size=6),
    first=st.sets(st.integers(0, 255), min_size=1),
    second=st.sets(st.integers(0, 255), min_size=1),
)
def test_python_lets_the_nfa_go_once_c_holds_it_and_makes_it_again_when_asked(
    pattern, texts, first, second
):
    """Once every NFA state is in C and the distances over one set of usable bytes are known,
    Python's copy of the NFA is let go (here whatever its size); distances over another set
    make it again, and every answer stays the reference's."""
    pair = _pair(pattern)
    if pair is None:
        return
    py, c = pair
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(native_lazy, "RELEASE_NFA_FROM", 0)
        _let_go_and_compare(py, c, texts, first, second)


def _let_go_and_compare(py, c, texts, first, second):
    ok_first, ok_second = np.zeros(256, dtype=bool), np.zeros(256, dtype=bool)
    ok_first[list(first)], ok_second[list(second)] = True, True
    partition = c.char_partition
    c.byte_distance(c.start, ok_first)
    assert c.release_nfa()
    assert c._sc is None
    assert c.char_partition is partition
    for text in texts:
        data = text.encode()
        for k in range(len(data) + 1):
            p, q = py.run(data[:k]), c.run(data[:k])
            assert (p == 0) == (q == 0), (c.patterns, data[:k])
            if p != 0:
                for ok in (ok_second, ok_first):
                    assert py.byte_distance(p, ok) == c.byte_distance(q, ok), (c.patterns, data[:k])
    assert c.match_index(c.start) == py.match_index(py.start)


def test_letting_the_nfa_go_frees_python_memory_and_counts_it():
    import tracemalloc

    pattern = r"\{(\"k[0-9]\": (true|false|[0-9]{1,5}|\"[a-z]{0,8}\"), ){0,60}\"end\": 1\}"
    assert compile_lazy(pattern).char_partition is not None  # the modules this imports
    tracemalloc.start()
    try:
        c = compile_lazy(pattern, timeout=None, native=True)
        c.byte_distance(c.start)  # the distances an index asks for first
        assert c.char_partition is not None  # (kept)
        counted = c.kept_nbytes
        before, after = _traced_release(c)
    finally:
        tracemalloc.stop()
    assert c._nfa_states >= native_lazy.RELEASE_NFA_FROM
    assert after < before / 4, (before, after)  # the NFA and its subset construction went
    assert counted - c.kept_nbytes >= (before - after) / 2  # and the count follows
    assert c.fullmatch('{"k1": true, "k2": "ab", "end": 1}')
    assert not c.fullmatch('{"k1": tru, "end": 1}')


def test_what_a_clear_keeps_is_reported_apart_from_the_cache():
    c = compile_lazy(r"\w{1,40}@\w{1,40}(\.\w{2,6}){1,4}", timeout=None, native=True)
    kept = c.kept_nbytes
    c.run(b"abc@example.co.uk")
    assert c.kept_nbytes > kept  # closures found, id blocks given
    assert c.nbytes > 0
    kept, cache = c.kept_nbytes, c.nbytes
    c.clear()
    assert c.kept_nbytes == kept and c.nbytes < cache


def test_a_small_nfa_is_kept_in_python():
    c = compile_lazy(r"\d{4}-\d{2}-\d{2}", timeout=None, native=True)
    c.byte_distance(c.start)
    assert not c.release_nfa()
    assert c._sc is not None  # letting it go would cost more than it holds
