"""The trie walk: the C walk against the numpy walk, and both against the tokens' own bytes.

A row is every token string alive from a state, with the state it leads to. The brute force
here runs each sampled token's bytes through the automaton one by one, with no trie, so it
shares nothing with either walk but the automaton itself (tested on its own in
``tests/automata``).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regexlm
from regexlm import native
from regexlm.automata import compile_lazy
from regexlm.errors import RegexError
from regexlm.index import native_walk, token_index
from regexlm.index.rows import flat_trie, walk_checked_rows, walk_rows
from regexlm.native import NATIVE_VARIABLE
from tests.index.walks import text_tokens
from tests.strategies import regex_patterns


@pytest.fixture(scope="module")
def trie(smollm2_vocab):
    return flat_trie(smollm2_vocab)


@pytest.fixture(scope="module")
def strings(smollm2_vocab):
    # the trie's string ids: the sorted distinct bytes of the ids that may be text
    never = smollm2_vocab.never_allowed()
    return sorted({b for b, n in zip(smollm2_vocab.token_bytes, never, strict=True) if not n})


def _triples(walk, automaton) -> set:
    o, s, q = walk
    return {(int(a), int(b), automaton.key(int(c))) for a, b, c in zip(o, s, q, strict=True)}


def _origins(automaton, samples: list[bytes]) -> np.ndarray:
    found = [automaton.start]
    for data in samples:
        q = automaton.run(data)
        if q != 0 and q not in found:
            found.append(q)
    return np.array(found, dtype=np.int64)


def test_the_c_walk_builds():
    assert native_walk.library() is not None, "the C walk could not be built here"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=regex_patterns(), samples=st.lists(st.binary(max_size=4), max_size=4), data=st.data()
)
def test_c_walk_equals_numpy_walk_and_the_bytes(trie, strings, pattern, samples, data):
    try:
        automaton = compile_lazy(pattern)
    except RegexError:
        return  # patterns the automata layer refuses are tested there
    origins = _origins(automaton, samples)
    native = walk_rows(trie, automaton, origins, native=True)
    numpy_walk = walk_rows(trie, automaton, origins, native=False)
    assert _triples(native, automaton) == _triples(numpy_walk, automaton)
    # brute force on a sample of strings: alive exactly when the bytes keep the DFA alive
    found = {(o, s): q for o, s, q in _triples(native, automaton)}
    picks = data.draw(st.lists(st.integers(0, len(strings) - 1), min_size=1, max_size=64))
    for i, origin in enumerate(origins.tolist()):
        for s in picks:
            if trie.first_token[s] < 0:
                continue  # a string only end-of-sequence ids spell: never text
            q = automaton.run(strings[s], origin)
            expected = None if q == 0 else automaton.key(q)
            assert found.get((i, s)) == expected, (pattern, strings[s])


@pytest.mark.parametrize("in_c", [False, True], ids=["python-cache", "c-cache"])
@pytest.mark.parametrize("pattern", [r"\w{1,50}", r".{0,300}", r"(日本|中文|😀|[a-z]){1,40}"])
def test_walks_agree_while_the_lazy_table_grows(trie, pattern, in_c):
    # a fresh automaton: every state is made during the C walk, so the table is reallocated
    # under it, and it must follow
    a = compile_lazy(pattern, native=in_c)
    native = walk_rows(trie, a, np.array([a.start]), native=True)
    assert a.num_states > 64  # it did grow
    numpy_walk = walk_rows(trie, a, np.array([a.start]), native=False)
    assert _triples(native, a) == _triples(numpy_walk, a)


def test_an_error_while_filling_a_row_reaches_the_caller(trie, monkeypatch):
    automaton = compile_lazy(r"[a-z]{1,20}", native=False)

    def fail(state):
        raise MemoryError("no room for a row")

    monkeypatch.setattr(automaton, "fill_row", fail)
    with pytest.raises(MemoryError, match="no room for a row"):
        walk_rows(trie, automaton, np.array([automaton.start]), native=True)


@pytest.mark.parametrize(
    "pattern",
    [r"[0-9]{4}-[0-9]{2}-[0-9]{2}", r"\w+( \w+){0,3}", r"(red|green|blue)!?", r"[^\n]{0,40}"],
)
def test_indexes_without_the_c_walk_allow_the_same_tokens(smollm2_vocab, pattern):
    with_c = regexlm.compile(pattern, smollm2_vocab, cache=False)
    with c_helpers_switched_off():
        assert native_walk.library() is None
        fallback = regexlm.compile(pattern, smollm2_vocab, cache=False)
        assert fallback.exact == with_c.exact
        rng = np.random.default_rng(0)
        a, b = with_c.start_state, fallback.start_state
        for _ in range(24):
            allowed = with_c.allowed_tokens(a).numpy()
            assert np.array_equal(allowed, fallback.allowed_tokens(b).numpy())
            assert with_c.is_match(a) == fallback.is_match(b)
            text = allowed[~np.isin(allowed, smollm2_vocab.eos_ids)]
            if text.size == 0:
                break
            token = int(rng.choice(text))
            a, b = with_c.next_state(a, token), fallback.next_state(b, token)
    assert native_walk.library() is not None  # the switch read again afterwards


@contextmanager
def c_helpers_switched_off():
    """``REGEXLM_NATIVE=0`` for the block, the switch read again at both ends."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(NATIVE_VARIABLE, "0")
        assert native.reread_switch() is False
        try:
            yield
        finally:
            patch.undo()
            native.reread_switch()


@pytest.fixture(params=[True, False], ids=["vector gathers", "portable"])
def pack_simd(request):
    native_walk.pack_simd(request.param)
    yield request.param
    native_walk.pack_simd(True)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    num_classes=st.integers(1, 40),
    vocab_size=st.integers(1, 200),
    num_rows=st.integers(1, 6),
    cap=st.one_of(st.none(), st.integers(0, 220)),
    class_dtype=st.sampled_from([np.uint16, np.int32]),
    data=st.data(),
)
def test_c_bitmask_rows_equal_the_tokens_allowed(
    pack_simd, num_classes, vocab_size, num_rows, cap, class_dtype, data
):
    # each bit against the definition, token by token: allowed iff its class's entry >= 0;
    # with `cap`, rows that allow only the listed small classes are packed from their tokens,
    # rows that forbid only them from a full row; the rest read every token's class, with the
    # CPU's vector gathers and without, from a uint16 class_of (as kept) and an int32 one
    class_of = np.array(
        data.draw(
            st.lists(st.integers(0, num_classes - 1), min_size=vocab_size, max_size=vocab_size)
        ),
        dtype=class_dtype,
    )
    rows = np.array(
        data.draw(
            st.lists(
                st.lists(st.integers(-1, 5), min_size=num_classes, max_size=num_classes),
                min_size=num_rows,
                max_size=num_rows,
            )
        ),
        dtype=np.int32,
    )
    members = None
    if cap is not None:
        members = native_walk.small_class_members(class_of, num_classes, cap)
        start, listed, small = members
        sizes = np.bincount(class_of, minlength=num_classes)
        counted = native_walk.small_class_members(class_of, num_classes, cap, sizes)
        assert all(np.array_equal(a, b) for a, b in zip(members, counted, strict=True))
        assert listed.size == sizes[small.astype(bool)].sum() <= cap
        # smallest first: no class left out is smaller than one listed
        if small.any() and not small.all():
            assert sizes[~small.astype(bool)].min() >= sizes[small.astype(bool)].max()
        for c in range(num_classes):
            assert sorted(listed[start[c] : start[c + 1]]) == (
                np.flatnonzero(class_of == c).tolist() if small[c] else []
            )
    packed = native_walk.pack_rows(rows, class_of, vocab_size, members)
    assert packed.shape == (num_rows, (vocab_size + 31) // 32)
    words = packed.view(np.uint32)
    for r in range(num_rows):
        for t in range((vocab_size + 31) // 32 * 32):
            bit = (int(words[r, t // 32]) >> (t % 32)) & 1
            expected = t < vocab_size and rows[r, class_of[t]] >= 0
            assert bit == expected, (r, t)


def test_host_masks_with_and_without_c_agree(smollm2_vocab):
    index = regexlm.compile(r"[a-z]{2,5}\d?|\.{0,3}", smollm2_vocab, cache=False)
    states = np.arange(min(index.num_states, 8))
    index.ensure_rows(states)
    assert np.array_equal(index._pack_host(states), index._pack_host(states, native=False))


@pytest.mark.parametrize(
    "pattern",
    [r"[0-9a-f]{8}-[0-9a-f]{4}", r"(red|green|blue|cyan)", r"\d{1,4}(\.\d\d)?", r"\w{1,5} \d"],
)
def test_masks_packed_from_the_small_classes_tokens_equal_numpys(smollm2_vocab, pattern):
    index = regexlm.compile(pattern, smollm2_vocab, cache=False)
    states = np.arange(index.num_states)
    index.ensure_rows(states)
    packed = index._pack_host(states)
    start, listed, small = index._members[1].members
    assert listed.size > 0 and listed.size <= smollm2_vocab.size // 32
    assert np.array_equal(packed, index._pack_host(states, native=False))


@pytest.mark.parametrize("pattern", [r".{0,300}", r"([a-z]{1,8}, ){0,30}[a-z]{1,8}"])
def test_cached_masks_are_shared_by_states_that_allow_the_same_classes(smollm2_vocab, pattern):
    index = regexlm.compile(pattern, smollm2_vocab, cache=False)
    rng = np.random.default_rng(0)
    state, seen = index.start_state, []
    for _ in range(30):
        mask = index.bitmask_rows([state])[0].numpy()
        # the cache's answer is the packing of this state's own row, whatever state filled it
        assert np.array_equal(mask, index._pack_host(np.array([state]), native=False)[0])
        seen.append(state)
        text = text_tokens(index, state, smollm2_vocab.eos_ids)
        if text.size == 0:
            break
        state = index.next_state(state, int(rng.choice(text)))
    assert len(index._masks) < len(set(seen))  # some states shared a mask


def test_rows_built_after_a_mask_was_served_have_their_masks_packed(smollm2_vocab, monkeypatch):
    index = regexlm.compile(r"[a-z]{1,8}( [a-z]{1,8}){0,20}", smollm2_vocab, cache=False)
    packs = []
    real_pack, real_final = index._pack_host, index._pack_final
    monkeypatch.setattr(index, "_pack_final", lambda *a: packs.append(1) or real_final(*a))
    index.ensure_rows([index.start_state])
    assert not packs  # an index that never served a mask packs none
    index.bitmask_rows([index.start_state])
    rng = np.random.default_rng(1)
    state, new_rows, packed_ahead = index.start_state, 0, 0
    for _ in range(30):
        text = text_tokens(index, state, smollm2_vocab.eos_ids)
        if text.size == 0:
            break
        state = index.next_state(state, int(rng.choice(text)))
        new = not index._rows.built[state]
        before = len(packs)
        index.ensure_rows([state])
        # only a row built here is packed here, and not when its mask is cached already
        assert len(packs) - before <= int(new)
        new_rows += new
        packed_ahead += len(packs) - before
        before = len(packs)
        mask = index.bitmask_rows([state])[0].numpy()
        if new:
            assert len(packs) == before  # packed by ensure_rows: a lookup now
        assert np.array_equal(mask, real_pack(np.array([state]), native=False)[0])
    assert new_rows >= 3 and packed_ahead >= 1  # the walk went past the explored states


def test_the_explored_rows_masks_are_packed_when_the_exploration_ends(smollm2_vocab, monkeypatch):
    index = regexlm.compile(r"(\d{1,3}\.){3}\d{1,3}", smollm2_vocab, cache=False)
    index.bitmask_rows([index.start_state])  # a mask served before the exploration
    index.settle()
    explored = np.flatnonzero(index._rows.built)
    assert explored.size > 8
    packs = []
    real_pack, real_final = index._pack_host, index._pack_final
    monkeypatch.setattr(index, "_pack_final", lambda *a: packs.append(1) or real_final(*a))
    masks = [index.bitmask_rows([int(state)])[0].numpy() for state in explored]
    assert not packs  # every explored state's first mask is a lookup
    for state, mask in zip(explored, masks, strict=True):
        assert np.array_equal(mask, real_pack(np.array([state]), native=False)[0])


def test_an_index_that_served_no_mask_packs_none_when_it_settles(smollm2_vocab):
    index = regexlm.compile(r"(\d{1,3}\.){3}\d{1,3}", smollm2_vocab, cache=False)
    index.settle()
    assert not index._masks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regex_patterns(), samples=st.lists(st.binary(max_size=4), max_size=5))
def test_the_walks_class_check_agrees_with_refining_the_classes(
    trie, smollm2_vocab, pattern, samples
):
    """Row after row (the classes refined by each), the C walk says a row splits no class
    exactly when :meth:`TokenClasses.refine` splits none, and gives the same row."""
    from regexlm.index.token_index import initial_classes

    try:
        automaton = compile_lazy(pattern, native=True)
    except RegexError:
        return
    classes = initial_classes(smollm2_vocab).copy()
    for origin in _origins(automaton, samples).tolist():
        o, s, q, (rows, keeps, found) = walk_checked_rows(
            trie, automaton, np.array([origin]), (classes.class_of, classes.size)
        )
        wide = walk_checked_rows(  # the same check reading an int32 class_of
            trie, automaton, np.array([origin]), (classes.class_of.astype(np.int32), classes.size)
        )[3]
        assert np.array_equal(wide[1], keeps) and wide[2] == found
        assert not keeps[0] or np.array_equal(wide[0][0], rows[0])
        if keeps[0] and o.size == 0:  # the triples were left out: walk again for them
            o, s, q = walk_rows(trie, automaton, np.array([origin]))
        assert o.size == found and np.array_equal(o, np.zeros(o.size)), "one origin"
        tokens, targets = trie.tokens(s.astype(np.int64)), q.astype(np.int64)
        split, row = classes.copy().refine(tokens, targets, automaton.num_states, native=False)
        assert bool(keeps[0]) == (split is None), pattern
        if keeps[0]:
            assert np.array_equal(rows[0], row), pattern
        classes.refine(tokens, targets, automaton.num_states)


def test_a_row_that_forbids_only_small_classes_clears_their_tokens_in_a_full_row():
    # class 0 is large; 1 and 2 are small: a row allowing 0 and 1 is packed as ones with the
    # tokens of class 2 cleared, and the last word keeps no bit past the vocabulary
    vocab_size = 70
    class_of = np.zeros(vocab_size, dtype=np.int32)
    class_of[[3, 40, 65]] = 1
    class_of[[7, 33, 69]] = 2
    members = native_walk.small_class_members(class_of, 3, cap=6)
    assert members[2].tolist() == [0, 1, 1]
    rows = np.array([[0, 5, -1], [-1, 5, -1], [0, 0, 0]], dtype=np.int32)
    packer = native_walk.RowPacker(class_of, vocab_size, members)
    words = packer.pack(rows).view(np.uint32)
    for r in range(rows.shape[0]):
        bits = [(int(words[r, t // 32]) >> (t % 32)) & 1 for t in range(96)]
        assert bits == [int(t < vocab_size and rows[r, class_of[t]] >= 0) for t in range(96)]


@pytest.mark.parametrize(
    "pattern",
    [r'"[^"\n]{0,30}"', r"[0-9a-f]{8}-[0-9a-f]{4}", r"\w{1,6}( \w{1,6}){0,3}", r".{0,20}\."],
)
def test_repeated_and_filled_masks_equal_numpys(smollm2_vocab, pattern):
    # every state's mask three ways (first ask, repeated ask, filled into a kept buffer) against
    # the numpy packing of its row
    index = regexlm.compile(pattern, smollm2_vocab, cache=False)
    index.bitmask_rows([index.start_state])
    index.settle()
    words = (smollm2_vocab.size + 31) // 32
    out = torch.full((3, words), -7, dtype=torch.int32)
    for state in range(index.num_states):
        first = index.bitmask_rows([state])[0].numpy()  # builds the row where needed
        expected = index._pack_host(np.array([state]), native=False)[0]
        assert np.array_equal(first, expected)
        assert np.array_equal(index.bitmask_rows([state])[0].numpy(), expected)
        index.fill_bitmask(out, [state], index=1)
        assert np.array_equal(out[1].numpy(), expected)
        assert (out[[0, 2]] == -7).all()
        assert np.array_equal(index.mask(state), expected)
    with pytest.raises(ValueError, match="must be"):
        index.fill_bitmask(torch.zeros(1, words + 1, dtype=torch.int32), [0])


def test_the_states_remembered_for_repeated_masks_are_bounded_and_counted(
    smollm2_vocab, monkeypatch
):
    monkeypatch.setattr(token_index, "MASK_KEYS_REMEMBERED", 4)
    index = regexlm.compile(r"[a-z]{1,30}", smollm2_vocab, cache=False)
    index.settle()
    sizes = []
    for state in range(index.num_states):
        first = index.bitmask_rows([state])[0].numpy()
        assert np.array_equal(index.bitmask_rows([state])[0].numpy(), first)
        assert np.array_equal(first, index._pack_host(np.array([state]), native=False)[0])
        sizes.append(len(index._mask_keys[1]))
    assert max(sizes) <= 4 and index.num_states > 8
    without = index.nbytes - token_index.MASK_KEY_BYTES * sizes[-1]
    index._mask_keys = (-1, {})
    assert index.nbytes == without


def test_a_masks_view_is_read_only_and_outlives_the_cache(smollm2_vocab, monkeypatch):
    # room for one packed mask: every new state evicts the last, whose views stay as they were
    monkeypatch.setattr(token_index, "MASK_CACHE_BYTES", 4)
    monkeypatch.setattr(token_index, "MASKS_KEPT_AT_LEAST", 1)
    index = regexlm.compile(r"[0-9a-f]{4}-[a-z]{1,5}", smollm2_vocab, cache=False)
    start = index.mask(index.start_state)
    assert index._rows.pending is not None, "the start state's mask settles nothing"
    assert index.mask(index.start_state) is start, "a repeated mask is the same view"
    with pytest.raises(ValueError, match="read-only"):
        start[0] = 0
    index.settle()
    views = {state: index.mask(state) for state in range(index.num_states)}
    assert len(index._masks) == 1
    for state, view in views.items():
        expected = index._pack_host(np.array([state]), native=False)[0]
        assert view.dtype == np.int32 and view.shape == ((smollm2_vocab.size + 31) // 32,)
        assert np.array_equal(view, expected), state
        assert np.array_equal(index.bitmask_rows([state])[0].numpy(), expected)
    with pytest.raises(IndexError, match="out of range"):
        index.mask(index.num_states)
    with pytest.raises(IndexError, match="out of range"):
        index.mask(-1)
