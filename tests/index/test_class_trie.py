"""The class trie: its groups against a Python reference, its rows against the byte trie's.

A row built by walking the class trie must equal the row the byte trie's walk gives for the
same automaton state (that walk is held to the tokens' own bytes in ``test_rows.py``), on the
real SmolLM2 vocabulary and on a small one full of stray bytes: halves of characters, overlong
forms, encoded surrogates, bytes no UTF-8 has.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regexlm
from regexlm.automata import compile_lazy
from regexlm.automata.char_classes import END, char_partition
from regexlm.errors import RegexError
from regexlm.index import Vocabulary, token_index
from regexlm.index import class_trie as ct
from regexlm.index.rows import walk_rows
from regexlm.index.token_classes import EOS_CLASS
from tests.strategies import regex_patterns

HEAVY = [
    r"(\w+\s?){1,10}",
    r"\w{1,40}@\w{1,40}(\.\w{2,6}){1,4}",
    r".{0,50}",
    r"[^\n]{0,30}x",
    r"(?i)[a-zé]{1,20}\b",
    r"(\w|é|ж){2,9}\W",
    r"\d{1,10}|\s+",
    r"(?s).{2,7}",
]

ODD_PIECES = [
    *(c.encode() for c in "abcxyzAZ09 _-.@\n\t"),
    *(w.encode() for w in ["ab", "abc", " x", "x ", "a b", "..", "@a", "\n\n", "9a"]),
    *(c.encode() for c in "éжЖ中😀²٣ a\u2028"),
    *(w.encode() for w in ["éa", "жж", " 中", "😀😀", "a²", "٣٣", "é é"]),
    b"\xe2\x80",  # the first two bytes of a three-byte character
    b"\x80",
    b"\xbf\xbf",
    b"\x98\x80a",  # the tail of a character, then text
    b"a\xe4\xb8",  # text, then half a character
    b"\xc3",
    b"\xc3\xa9\xc3",
    b"\xc0\xaf",  # an overlong '/'
    b"\xe0\x80\xaf",  # an overlong '/', three bytes
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xf5",
    b"\xff\xfe",
    b"\xf0\x9f\x98",  # three of the four bytes of an emoji
    b"\x80\x80\x80\x80",
]


@pytest.fixture(scope="module")
def odd_vocab():
    return Vocabulary([b"<eos>", *ODD_PIECES], eos_ids=[0], special_ids=[0])


def _groups_of(trie: ct.ClassTrie, vocab, automaton) -> tuple[int, set]:
    """The C class trie's node count and groups as sets of string ids."""
    chars = ct.char_trie(vocab)
    symbol, count = ct.unit_symbols(chars, automaton)
    # the strings of each group: rebuild from the C output's group of every string
    group_of_string = np.full(chars.num_strings, -1, dtype=np.int32)
    out = [np.empty(chars.num_nodes, dtype=np.int32) for _ in range(4)]
    n = ct._library()(
        *(chars.depth.ctypes.data, chars.unit.ctypes.data, chars.term.ctypes.data),
        *(chars.num_nodes, chars.max_depth, symbol.ctypes.data, count, chars.num_nodes),
        *(a.ctypes.data for a in out),
        group_of_string.ctypes.data,
    )
    assert n == trie.num_nodes
    groups: dict = {}
    for s, g in enumerate(group_of_string.tolist()):
        if g >= 0:
            groups.setdefault(g, set()).add(s)
    assert np.array_equal(np.bincount(group_of_string[group_of_string >= 0]), trie.weight)
    return n, {frozenset(g) for g in groups.values()}


def _check_groups(vocab, pattern: str) -> None:
    try:
        automaton = compile_lazy(pattern)
    except RegexError:
        return
    trie = ct.class_trie(vocab, automaton, max_nodes=1 << 30)
    assert trie is not None
    nodes, groups = ct.class_groups_reference(vocab, automaton)
    assert _groups_of(trie, vocab, automaton) == (nodes, set(groups))
    # preorder: a node's subtree is the `size` nodes from it, one level deeper at its start
    depth, size = trie.depth, trie.size
    assert depth.size == 0 or depth[0] == 1
    for i in np.flatnonzero(size > 1)[:50].tolist():
        assert depth[i + 1] == depth[i] + 1
        assert (depth[i + 1 : i + size[i]] > depth[i]).all()


def test_the_class_trie_builds():
    assert ct._library() is not None, "the C code could not be built here"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=st.one_of(regex_patterns(), st.sampled_from(HEAVY)))
def test_c_groups_equal_the_python_reference_on_stray_bytes(odd_vocab, pattern):
    _check_groups(odd_vocab, pattern)


@pytest.mark.parametrize("pattern", HEAVY[:3])
def test_c_groups_equal_the_python_reference_on_smollm2(smollm2_vocab, pattern):
    _check_groups(smollm2_vocab, pattern)


@settings(max_examples=60, deadline=None)
@given(
    sets=st.lists(
        st.lists(st.tuples(st.integers(0, END - 1), st.integers(0, 300)), max_size=6),
        max_size=5,
    ),
    probes=st.lists(st.integers(0, END - 1), min_size=1, max_size=30),
)
def test_char_classes_hold_the_code_points_every_set_treats_alike(sets, probes):
    from regexlm.automata import charset as cs
    from regexlm.automata.nfa import CharNFA

    nfa = CharNFA()
    q = nfa.add()
    canon = [cs.canonical((lo, min(lo + n, END - 1)) for lo, n in ranges) for ranges in sets]
    nfa.edges[q] = [(c, q) for c in canon if c]
    partition = char_partition(nfa)
    probes = probes + [lo for c in canon for lo, _ in c] + [hi + 1 for c in canon for _, hi in c]
    probes = [p for p in probes if p < END]
    classes = partition.classify(np.array(probes)).tolist()
    for a, ca in zip(probes, classes, strict=True):
        for b, cb in zip(probes, classes, strict=True):
            alike = all(cs.contains(c, a) == cs.contains(c, b) for c in canon if c)
            assert (ca == cb) == alike, (a, b)


def _byte_walk_row(rows, state: int) -> dict:
    """``{first token: target key}`` of ``state`` from the byte trie's walk."""
    q = rows._automaton_states(np.array([state]))
    _, strings, targets = walk_rows(rows.trie, rows.automaton, q)
    automaton = rows.automaton
    out = {}
    for s, t in zip(strings.tolist(), targets.tolist(), strict=True):
        if automaton.byte_distance(t, rows.usable) >= token_index.UNREACHABLE:
            continue  # strict rows leave out targets no single-byte path completes
        out[int(rows.trie.first_token[s])] = automaton.key(t)
    return out


def _index_row(rows, state: int) -> dict:
    firsts = rows.trie.first_token[rows.trie.first_token >= 0]
    cls = rows.class_of[firsts]
    target = rows.rows([state])[0][cls]
    keep = (target >= 0) & (cls != EOS_CLASS)
    return {int(t): rows.keys[int(n)] for t, n in zip(firsts[keep], target[keep], strict=True)}


def _walk_and_compare(vocab, pattern: str, seed: int, monkeypatch) -> bool:
    """Build rows along a random walk with the class trie made at the second row; every row
    must equal the byte walk's. Returns whether the class trie was used."""
    monkeypatch.setattr(token_index, "CLASS_TRIE_WIDTH", -1.0)
    try:
        index = regexlm.compile(pattern, vocab, cache=False, mode="lazy")
    except RegexError:
        return False
    rows = index._rows
    rng = np.random.default_rng(seed)
    state = index.start_state
    for _ in range(8):
        index.ensure_rows([state])
        assert _index_row(rows, state) == _byte_walk_row(rows, state), (pattern, state)
        allowed = np.flatnonzero(rows.rows([state])[0][FIRST_ROW_SKIP:] >= 0) + FIRST_ROW_SKIP
        if allowed.size == 0:
            break
        state = int(rows.rows([state])[0][int(rng.choice(allowed))])
    return bool(rows.class_trie)


FIRST_ROW_SKIP = EOS_CLASS + 1  # columns of text classes


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(pattern=st.one_of(regex_patterns(), st.sampled_from(HEAVY)), seed=st.integers(0, 99))
def test_rows_through_the_class_trie_equal_the_byte_walk_on_stray_bytes(
    odd_vocab, pattern, seed, monkeypatch
):
    _walk_and_compare(odd_vocab, pattern, seed, monkeypatch)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    pattern=st.one_of(regex_patterns(max_depth=2), st.sampled_from(HEAVY)), seed=st.integers(0, 99)
)
def test_rows_through_the_class_trie_equal_the_byte_walk_on_smollm2(
    smollm2_vocab, pattern, seed, monkeypatch
):
    _walk_and_compare(smollm2_vocab, pattern, seed, monkeypatch)


@pytest.mark.parametrize("pattern", HEAVY)
def test_heavy_patterns_walk_the_class_trie(smollm2_vocab, pattern, monkeypatch):
    assert _walk_and_compare(smollm2_vocab, pattern, 0, monkeypatch)


def test_a_wide_walk_makes_the_class_trie_and_counts_its_bytes(smollm2_vocab):
    index = regexlm.compile(r"\w{1,40}", smollm2_vocab, cache=False, mode="lazy")
    rows = index._rows
    assert rows.class_trie is None  # not at compile: the start row alone
    before = index.nbytes
    letter = smollm2_vocab.token_bytes.index(b"a")
    index.ensure_rows([int(rows.rows([0])[0][rows.class_of[letter]])])  # after one letter
    assert rows.class_trie
    assert rows.automaton.cache_bytes <= token_index.CLASS_TRIE_AUTOMATON_BYTES
    assert index.nbytes >= before + rows.class_trie.nbytes
    assert rows.class_trie.num_nodes < rows.trie.num_nodes // 20


def test_a_narrow_pattern_keeps_the_byte_trie(smollm2_vocab):
    index = regexlm.compile(r"(foo|bar)[0-9]{2}baz", smollm2_vocab, cache=False, mode="lazy")
    index.ensure_rows([int(index._rows.rows([0])[0][FIRST_ROW_SKIP:].max())])
    assert index._rows.class_trie is None


@pytest.mark.parametrize("pattern", [r"\w{1,50}", r"(\w+\s?){1,10}", r"[a-z ]{1,40}"])
def test_the_automaton_is_within_its_budget_between_row_builds(smollm2_vocab, pattern):
    # the byte-trie walks of a broad pattern make states past the budget; the index clears
    # them when a build ends, so what it holds (and reports) stays within the budget
    index = regexlm.compile(pattern, smollm2_vocab, cache=False).settle()
    automaton = index._rows.automaton
    assert automaton.nbytes <= automaton.cache_bytes
    state = index.start_state
    for _ in range(6):
        index.ensure_rows([state])
        assert automaton.nbytes <= automaton.cache_bytes
        assert index.nbytes >= automaton.nbytes
        state = int(index._rows.rows([state])[0][FIRST_ROW_SKIP:].max())
        if state < 0:
            break
