"""Whole subtrees: the C walk hands over a subtree its origin's chain reads alike.

Two things are checked against references that share nothing with the C code: the trie's
summary (what each large subtree reads, whether it is well-formed UTF-8 after a character
boundary with every token ending on one, its strings, their characters) against Python's own
UTF-8 decoder run on every node's bytes; and the walks that hand subtrees over whole against
the same walks stepping through every node and against the numpy walk, on the real vocabulary
and on one of odd pieces (half characters, overlong and surrogate encodings, stray
continuation bytes), through the C lazy DFA, the Python lazy DFA and an eager DFA.
"""

from __future__ import annotations

import codecs

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regexlm
from regexlm.automata import compile_lazy, compile_regex
from regexlm.index import Vocabulary, native_walk
from regexlm.index.rows import EagerAutomaton, flat_trie, walk_rows
from regexlm.index.token_index import initial_classes
from tests.index.test_class_trie import ODD_PIECES


def _node_paths(trie) -> list[bytes]:
    """Every node's bytes from the root (the token prefix it ends)."""
    paths: list[bytes] = []
    stack: list[bytes] = [b""]
    for d, b in zip(trie.depth.tolist(), trie.node_byte.tolist(), strict=True):
        del stack[d:]
        stack.append(stack[d - 1] + bytes([b]))
        paths.append(stack[d])
    return paths


def _is_prefix(data: bytes) -> bool:
    """Whether ``data`` begins some well-formed UTF-8 (Python's strict decoder says)."""
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _chars(data: bytes) -> int | None:
    """Characters of ``data``, or None where it is not whole UTF-8."""
    try:
        return len(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None


def _reference_summary(trie, min_size: int) -> list[dict]:
    """Per node of at least ``min_size`` nodes, in preorder, what the summary must say."""
    paths = _node_paths(trie)
    size = trie.size.tolist()
    string = trie.node_string.tolist()
    byte = trie.node_byte.tolist()
    out = []
    for i, n in enumerate(size):
        if n < min_size:
            continue
        nodes = range(i, i + n)
        strings = [string[j] for j in nodes if string[j] >= 0]
        runs = not strings or max(strings) - min(strings) + 1 == len(strings)
        before = _chars(paths[i][:-1])
        whole = (
            before is not None
            and all(_is_prefix(paths[j]) for j in nodes)
            and all(_chars(paths[j]) is not None for j in nodes if string[j] >= 0)
            and runs
        )
        ascii_read = {byte[j] for j in nodes if byte[j] < 128}
        entry = {
            "whole": whole,
            "nonascii": any(byte[j] >= 128 for j in nodes),
            "ascii": ascii_read,
            "count": len(strings),
        }
        if strings:
            entry["first"] = min(strings)
        if whole:
            entry["before"] = before
            entry["span"] = max(
                (_chars(paths[j]) - before for j in nodes if string[j] >= 0), default=0
            )
        out.append(entry)
    return out


def _summary_entries(trie) -> list[dict]:
    struct, arrays = native_walk.trie_summary(trie)
    out = []
    flags = arrays["flags"].tolist()
    for b in range(int(np.count_nonzero(trie.size >= struct.contents.min_size))):
        lo, hi = (int(x) for x in arrays["ascii"][2 * b : 2 * b + 2])
        entry = {
            "whole": bool(flags[b] & 1),
            "nonascii": bool(flags[b] & 2),
            "ascii": {c for c in range(128) if (lo if c < 64 else hi) >> (c & 63) & 1},
            "count": int(arrays["count"][b]),
        }
        if entry["count"]:
            entry["first"] = int(arrays["first"][b])
        if entry["whole"]:
            entry["before"] = int(arrays["before"][b])
            entry["span"] = int(arrays["span"][b])
        out.append(entry)
    return out


ODD_MIN_SIZE = 2


@pytest.fixture(scope="module")
def odd_trie():
    """Odd pieces and their pairs (subtrees that mix whole characters, half ones and bytes
    that are no UTF-8 at all), summarized down to subtrees of two nodes."""
    pieces = list(dict.fromkeys([*ODD_PIECES, *(a + b for a in ODD_PIECES for b in ODD_PIECES)]))
    trie = flat_trie(Vocabulary([b"<eos>", *pieces], eos_ids=[0], special_ids=[0]))
    kept = native_walk.WHOLE_SUBTREE_NODES
    native_walk.WHOLE_SUBTREE_NODES = ODD_MIN_SIZE
    try:
        native_walk.trie_summary(trie)  # made now, kept by the trie
    finally:
        native_walk.WHOLE_SUBTREE_NODES = kept
    return trie


def test_the_summary_agrees_with_decoding_every_nodes_bytes(smollm2_vocab):
    trie = flat_trie(smollm2_vocab)
    made = _summary_entries(trie)
    assert made == _reference_summary(trie, native_walk.WHOLE_SUBTREE_NODES)
    assert sum(e["whole"] for e in made) > 100 and not all(e["whole"] for e in made)
    # string_chars: each string's characters, where its bytes are whole UTF-8
    _, arrays = native_walk.trie_summary(trie)
    paths = _node_paths(trie)
    for j in np.flatnonzero(trie.node_string >= 0).tolist():
        chars = _chars(paths[j])
        if chars is not None:
            assert arrays["string_chars"][trie.node_string[j]] == chars


def test_the_summary_of_odd_pieces_agrees_with_decoding(odd_trie):
    made = _summary_entries(odd_trie)
    assert made == _reference_summary(odd_trie, ODD_MIN_SIZE)
    assert any(e["whole"] for e in made) and any(not e["whole"] for e in made)


def _triples(walk, automaton) -> np.ndarray:
    """The walk's triples as sorted rows ``(origin position, string, state)``, each state
    named by its automaton key (a cache cleared between two walks renumbers states)."""
    o, s, q = (np.asarray(a, dtype=np.int64) for a in walk)
    states, at = np.unique(q, return_inverse=True)
    names = np.array([hash(automaton.key(int(x))) for x in states], dtype=np.int64)
    rows = np.stack([o, s, names[at] if q.size else q])
    return rows[:, np.lexsort(rows[::-1])]


def _origins(automaton, texts: list[str]) -> np.ndarray:
    run = automaton.dfa.run if isinstance(automaton, EagerAutomaton) else automaton.run
    found = [automaton.start]
    for text in texts:
        q = run(text.encode())
        if q != 0 and q not in found:
            found.append(q)
    return np.array(found, dtype=np.int64)


def _agree(trie, automaton, origins, *, numpy: bool = False) -> int:
    """The walk that hands subtrees over whole against stepping through every node (and the
    numpy walk); returns the subtrees it handed over."""
    whole = walk_rows(trie, automaton, origins, native=True)
    handed = native_walk._current.whole
    stepped = walk_rows(trie, automaton, origins, native=True, whole_subtrees=False)
    assert native_walk._current.whole == 0
    want = _triples(stepped, automaton)
    assert np.array_equal(_triples(whole, automaton), want)
    if numpy:
        numpy_walk = walk_rows(trie, automaton, origins, native=False)
        assert np.array_equal(_triples(numpy_walk, automaton), want)
    return handed


BROAD = [
    r'[^"\\]',
    ".",
    r"[^\n]",
    r"\w",
    "[a-z ,]",
    "[^a]",
    r"\D",
    r"[\x20-\x7e]",
    "[a-zA-Z0-9é中]",
    r"[^\x00-\x1f]",
]
REPEATS = ["*", "+", "{0,3}", "{0,40}", "{2,9}", "{1,150}"]

broad_patterns = st.builds(
    lambda pre, cls, rep, post: f"{pre}{cls}{rep}{post}",
    st.sampled_from(["", '"', "x", "ab"]),
    st.sampled_from(BROAD),
    st.sampled_from(REPEATS),
    st.sampled_from(["", '"', r"\.", ",x", "(é|!)"]),
)
texts = st.lists(st.text(alphabet='ax é"\n中,.😀', max_size=12), max_size=4)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=broad_patterns, texts=texts)
def test_whole_subtrees_equal_stepping_every_node(smollm2_vocab, pattern, texts):
    trie = flat_trie(smollm2_vocab)
    automaton = compile_lazy(pattern)
    _agree(trie, automaton, _origins(automaton, texts))


# origins along each pattern's repeat, and at its end, where only what follows it lives on
TEXTS = ['"', '"abc', '"' + "x" * 36, '"' + "x" * 40, '"' + "x" * 12, "a" * 298, "a" * 300]
TEXTS += ["é" * 4, "é" * 5, "b" * 49, "b" * 50, "!"]


@pytest.mark.parametrize(
    "pattern",
    [
        r'"([^"\\]|\\.)*"',
        r'"[^"\\]{0,40}"',
        r"[^\n]{0,300}",
        r".{0,5}!",
        r"\w{1,50}",
        "[^a]*b",
        # the repeat's last state reads on a byte of its class (a string past the chain lives)
        "[a-z ]{0,3}[ex]",
    ],
)
@pytest.mark.parametrize("in_c", [True, False], ids=["c-lazy", "python-lazy"])
def test_subtrees_are_handed_over_whole_through_lazy_automata(smollm2_vocab, pattern, in_c):
    trie = flat_trie(smollm2_vocab)
    automaton = compile_lazy(pattern, native=in_c)
    assert _agree(trie, automaton, _origins(automaton, TEXTS), numpy=not in_c) > 0


@pytest.mark.parametrize("pattern", [r'"([^"\\]|\\.)*"', r'"[^"\\]{0,12}"', r".{0,5}!", "[^a]*b"])
def test_subtrees_are_handed_over_whole_through_an_eager_dfa(smollm2_vocab, pattern):
    trie = flat_trie(smollm2_vocab)
    automaton = EagerAutomaton(compile_regex(pattern))
    assert _agree(trie, automaton, _origins(automaton, TEXTS), numpy=True) > 0


def _state_names(states: np.ndarray, automaton) -> np.ndarray:
    """``states`` (-1: none) named by their automaton keys, as in :func:`_triples`."""
    flat = np.asarray(states, dtype=np.int64).reshape(-1)
    names = [hash(automaton.key(int(q))) if q >= 0 else -1 for q in flat.tolist()]
    return np.array(names, dtype=np.int64).reshape(np.shape(states))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=broad_patterns, texts=texts, refined=st.booleans())
def test_the_class_check_hands_subtrees_over_as_stepping_finds(
    smollm2_vocab, pattern, texts, refined
):
    """With the class check, one origin's whole subtrees are checked without writing their
    triples, and the walk starts again the usual way where its row splits a class: the class
    rows, what keeps its classes and the strings found equal stepping through every node, and
    so do the triples where a row splits. Classes refined by the pattern's own rows (most
    rows keep them) or the vocabulary's first classes (most split)."""
    trie = flat_trie(smollm2_vocab)
    automaton = compile_lazy(pattern)
    if refined:
        index = regexlm.compile(pattern, smollm2_vocab, cache=False, mode="auto").settle()
        token_classes = index._rows.classes
    else:
        token_classes = initial_classes(smollm2_vocab)
    classes = (token_classes.class_of, token_classes.size)
    fn = native_walk.library()
    origins = _origins(automaton, texts)
    for batch in [*(origins[i : i + 1] for i in range(origins.size)), origins]:
        whole = native_walk.walk(fn, trie, automaton, batch, classes=classes)
        stepped = native_walk.walk(
            fn, trie, automaton, batch, classes=classes, whole_subtrees=False
        )
        (rows_w, keeps_w, found_w), (rows_s, keeps_s, found_s) = whole[3], stepped[3]
        assert found_w == found_s, pattern
        assert np.array_equal(keeps_w, keeps_s), pattern
        assert np.array_equal(
            _state_names(rows_w[keeps_w], automaton), _state_names(rows_s[keeps_s], automaton)
        )
        if not keeps_s.all():
            assert np.array_equal(_triples(whole[:3], automaton), _triples(stepped[:3], automaton))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.sampled_from([r'"[^"\\]{0,40}"', r"[^\n]{0,300}", r"\w{1,50}", "(?s).{0,80}x"]),
    text=st.sampled_from(['"', '"ab', "", "aaa"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_classes_merged_across_targets_split_as_stepping_finds(smollm2_vocab, pattern, text, seed):
    """Classes made to miss what the pattern tells apart: the tokens alive from the origin
    grouped by the state they lead to and by whether they lie in a large subtree that may be
    handed over whole, the dead ones apart, then two of these classes merged: alive tokens
    that part ways, or alive and dead ones in one class. Whether the row splits the merged
    class rests on the check of where each string goes and of how many are named, inside
    whole subtrees too."""
    trie = flat_trie(smollm2_vocab)
    automaton = compile_lazy(pattern)
    origin = automaton.run(text.encode())
    if origin == 0:
        return
    origins = np.array([origin])
    _, alive, target = walk_rows(trie, automaton, origins, native=False)
    summary = native_walk.trie_summary(trie)[1]
    in_whole = np.zeros(trie.num_strings, dtype=np.int64)
    for first, count, flags in zip(
        summary["first"], summary["count"], summary["flags"], strict=True
    ):
        if flags & 1:  # SUBTREE_WHOLE
            in_whole[first : first + count] = 1
    kinds, group = np.unique(np.stack([target, in_whole[alive]]), axis=1, return_inverse=True)
    group = group.reshape(-1)
    if kinds.shape[1] < 2:
        return
    dead = kinds.shape[1]  # the class of the dead tokens
    rng = np.random.default_rng(seed)
    a, b = rng.choice(dead, size=2, replace=False)
    if rng.random() < 0.5:
        a = dead  # alive and dead tokens in one class
    group[group == b] = a
    class_of = np.full(smollm2_vocab.size, dead, dtype=np.uint16)
    class_of[trie.tokens(alive)] = group
    size = np.bincount(class_of, minlength=dead + 1).astype(np.int64)
    fn = native_walk.library()
    whole = native_walk.walk(fn, trie, automaton, origins, classes=(class_of, size))
    stepped = native_walk.walk(
        fn, trie, automaton, origins, classes=(class_of, size), whole_subtrees=False
    )
    (rows_w, keeps_w, found_w), (rows_s, keeps_s, found_s) = whole[3], stepped[3]
    assert found_w == found_s and np.array_equal(keeps_w, keeps_s)
    if keeps_s.all():  # (two groups of one state merged)
        assert np.array_equal(_state_names(rows_w, automaton), _state_names(rows_s, automaton))
    else:
        assert np.array_equal(_triples(whole[:3], automaton), _triples(stepped[:3], automaton))


def test_a_row_that_keeps_its_classes_is_checked_whole(smollm2_vocab):
    pattern = r'"[^"\\]{0,40}"'
    trie = flat_trie(smollm2_vocab)
    automaton = compile_lazy(pattern)
    index = regexlm.compile(pattern, smollm2_vocab, cache=False, mode="auto").settle()
    classes = (index._rows.classes.class_of, index._rows.classes.size)
    inside = np.array([automaton.run(b'"ab')])
    o, s, q, (rows, keeps, found) = native_walk.walk(
        native_walk.library(), trie, automaton, inside, classes=classes
    )
    assert keeps.all() and native_walk._current.whole > 0
    assert o.size == 0  # nothing written: the class rows say it all
    assert found == walk_rows(trie, automaton, inside, native=False)[0].size


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=broad_patterns, texts=texts)
def test_odd_pieces_walk_whole_as_they_step(odd_trie, pattern, texts):
    automaton = compile_lazy(pattern)
    _agree(odd_trie, automaton, _origins(automaton, texts), numpy=True)


def test_odd_pieces_are_handed_over_whole_somewhere(odd_trie):
    automaton = compile_lazy("[^a]*")
    assert _agree(odd_trie, automaton, _origins(automaton, ["é", "b"]), numpy=True) > 0
