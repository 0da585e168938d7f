"""Token classes refined row by row: two tokens share a class exactly when no row so far tells
them apart, and every row read through the classes gives each token its own value."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from regexlm.index.token_classes import EOS_CLASS, NEVER_CLASS, TokenClasses


def _refine_alike(reference, native, tokens, targets, num_targets):
    """Refine ``reference`` with numpy and ``native`` with the C code by the same row; they must
    agree on the old class of every class, the row, ``class_of`` (values and dtype) and the
    sizes. Returns the old classes (None when nothing split)."""
    want = reference.refine(tokens, targets, num_targets, native=False)
    got = native.refine(tokens, targets, num_targets)
    assert (want[0] is None) == (got[0] is None)
    if want[0] is not None:
        assert np.array_equal(want[0], got[0])
    assert np.array_equal(want[1], got[1])
    assert np.array_equal(reference.class_of, native.class_of)
    assert reference.class_of.dtype == native.class_of.dtype
    assert np.array_equal(reference.size, native.size)
    return got[0]


@settings(max_examples=200, deadline=None)
@given(
    vocab_size=st.integers(1, 60),
    seed=st.integers(0, 2**32 - 1),
    num_rows=st.integers(1, 12),
    num_targets=st.integers(1, 5),
    density=st.floats(0.0, 1.0),
    native=st.booleans(),
)
def test_refinement_is_the_coarsest_partition_that_keeps_every_row(
    vocab_size, seed, num_rows, num_targets, density, native
):
    # native: the C check of whether a row splits anything first; else numpy alone
    rng = np.random.default_rng(seed)
    never = rng.random(vocab_size) < 0.1
    eos = [int(i) for i in np.flatnonzero(~never)[:1]]
    classes = TokenClasses.initial(never, eos)
    text = np.flatnonzero(classes.class_of >= 2)
    values = []  # per row: int64[V], -1 where not allowed
    table = np.zeros((0, classes.num_classes), dtype=np.int32)  # rows over classes so far
    for _ in range(num_rows):
        live = text[rng.random(text.size) < density]
        if rng.random() < 0.3 and live.size:  # rows often send a whole block one way
            targets = np.full(live.size, rng.integers(num_targets))
        else:
            targets = rng.integers(0, num_targets, size=live.size)
        value = np.full(vocab_size, -1, dtype=np.int64)
        value[live] = targets
        values.append(value)
        old_of_new, row = classes.refine(
            live.astype(np.int64), targets.astype(np.int64), num_targets, native=native
        )
        if old_of_new is not None:
            table = table[:, old_of_new]
        table = np.vstack([table, row[None, :]])
        assert classes.size.sum() == vocab_size
        assert np.array_equal(
            classes.size, np.bincount(classes.class_of, minlength=classes.num_classes)
        )
    c = classes.class_of
    assert (c[never] == NEVER_CLASS).all() and (c[eos] == EOS_CLASS).all()
    # every row, read through the classes, gives every text token its own value
    for value, row in zip(values, table, strict=True):
        assert np.array_equal(row[c[text]], value[text])
    # coarsest: text tokens with equal values in every row share a class, and only they do
    signature = np.stack(values, axis=1)[text]  # [T, rows]
    _, by_signature = np.unique(signature, axis=0, return_inverse=True)
    _, by_class = np.unique(c[text], return_inverse=True)
    pairs = {
        (int(a), int(b))
        for a, b in zip(by_signature.reshape(-1), by_class.reshape(-1), strict=True)
    }
    assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), num_rows=st.integers(1, 8))
def test_shadows_follow_their_first_token(seed, num_rows):
    # ids that spell the same bytes as another are never named by a row, yet must be allowed
    # exactly where their first token is
    rng = np.random.default_rng(seed)
    vocab_size = 40
    never = np.zeros(vocab_size, dtype=bool)
    shadows = np.arange(30, 40, dtype=np.int64)
    shadowed = rng.integers(2, 30, size=shadows.size).astype(np.int64)
    classes = TokenClasses.initial(never, [0], shadows, shadowed)
    named = np.arange(1, 30)  # token 0 is end-of-sequence
    table = np.zeros((0, classes.num_classes), dtype=np.int32)
    for _ in range(num_rows):
        live = named[rng.random(named.size) < 0.5]
        targets = rng.integers(0, 3, size=live.size).astype(np.int64)
        old_of_new, row = classes.refine(live, targets, 3)
        if old_of_new is not None:
            table = table[:, old_of_new]
        table = np.vstack([table, row[None, :]])
    c = classes.class_of
    assert np.array_equal(c[shadows], c[shadowed])
    assert classes.size.sum() == vocab_size - shadows.size
    assert np.array_equal(classes.token_counts(), np.bincount(c, minlength=classes.num_classes))
    assert np.array_equal(table[:, c[shadows]], table[:, c[shadowed]])


@settings(max_examples=150, deadline=None)
@given(
    vocab_size=st.integers(1, 80),
    seed=st.integers(0, 2**32 - 1),
    num_rows=st.integers(1, 10),
    num_targets=st.sampled_from([1, 2, 5, 1000, 2**31 - 1]),
    density=st.floats(0.0, 1.0),
    with_shadows=st.booleans(),
    wide=st.booleans(),
)
def test_c_refinement_numbers_classes_as_numpy_does(
    vocab_size, seed, num_rows, num_targets, density, with_shadows, wide
):
    # the C code and the numpy reference, row after row, agree on every class id, size, old
    # class and row entry (not only on the partition): a cached index reads the same either way;
    # from a uint16 class_of (as kept) or an int32 one, which both keep
    from regexlm.index import native_walk

    if native_walk.library() is None:
        return
    rng = np.random.default_rng(seed)
    never = rng.random(vocab_size) < 0.1
    shadows = shadowed = np.zeros(0, dtype=np.int64)
    if with_shadows and vocab_size > 6:
        shadows = np.arange(vocab_size - 3, vocab_size, dtype=np.int64)
        never[shadows] = False
    eos = [int(i) for i in np.flatnonzero(~never)[:1] if i not in shadows]
    text = np.setdiff1d(np.flatnonzero(~never), np.concatenate([eos, shadows]).astype(np.int64))
    if shadows.size and text.size:
        shadowed = rng.choice(text, size=shadows.size).astype(np.int64)
    elif shadows.size:
        shadows = np.zeros(0, dtype=np.int64)
    reference = TokenClasses.initial(never, eos, shadows, shadowed)
    assert reference.class_of.dtype == np.uint16
    if wide:
        reference.class_of = reference.class_of.astype(np.int32)
    native = reference.copy()
    for _ in range(num_rows):
        live = text[rng.random(text.size) < density].astype(np.int64)
        rng.shuffle(live)  # rows name their tokens in any order
        targets = rng.integers(0, num_targets, size=live.size).astype(np.int64)
        if rng.random() < 0.3:
            targets[:] = targets[0] if targets.size else 0
        _refine_alike(reference, native, live, targets, num_targets)
        assert native.class_of.dtype == (np.int32 if wide else np.uint16)


def test_c_refinement_with_thousands_of_groups_numbers_classes_as_numpy_does():
    # enough (class, target) groups that the C code's table of groups grows several times
    from regexlm.index import native_walk

    if native_walk.library() is None:
        return
    rng = np.random.default_rng(7)
    vocab_size = 20_000
    reference = TokenClasses.initial(np.zeros(vocab_size, dtype=bool), [0])
    native = reference.copy()
    for num_targets in (5_000, 50, 3_000):
        live = rng.choice(np.arange(1, vocab_size), size=15_000, replace=False).astype(np.int64)
        targets = rng.integers(0, num_targets, size=live.size).astype(np.int64)
        assert _refine_alike(reference, native, live, targets, num_targets) is not None
    assert native.num_classes > 1_000


def test_classes_past_65536_widen_class_of_to_int32_as_numpy_does():
    # a row that gives 70,000 tokens as many targets makes more classes than uint16 can name:
    # class_of becomes int32 (the C code finds out after grouping and refines again), and a
    # later row over the wide classes reads the same both ways
    from regexlm.index import native_walk

    if native_walk.library() is None:
        return
    rng = np.random.default_rng(3)
    vocab_size = 70_001
    reference = TokenClasses.initial(np.zeros(vocab_size, dtype=bool), [0])
    native = reference.copy()
    live = rng.permutation(np.arange(1, vocab_size)).astype(np.int64)
    for targets in (np.arange(live.size), rng.integers(0, 3, size=live.size)):
        _refine_alike(reference, native, live, targets.astype(np.int64), live.size)
        assert native.class_of.dtype == np.int32
    assert native.num_classes == vocab_size + 1  # never-allowed, EOS, one per text token


@settings(max_examples=100, deadline=None)
@given(
    vocab_size=st.integers(1, 60),
    seed=st.integers(0, 2**32 - 1),
    num_rows=st.integers(1, 8),
    native=st.booleans(),
)
def test_forked_classes_never_write_into_the_arrays_they_share(vocab_size, seed, num_rows, native):
    """Every index of a vocabulary forks the same initial classes: refining a fork replaces its
    arrays and leaves the shared ones as they were."""
    rng = np.random.default_rng(seed)
    shared = TokenClasses.initial(np.zeros(vocab_size, dtype=bool), [])
    class_of, size = shared.class_of.copy(), shared.size.copy()
    fork = shared.fork()
    for _ in range(num_rows):
        tokens = np.flatnonzero(rng.random(vocab_size) < 0.5)
        fork.refine(tokens, rng.integers(0, 3, tokens.size), 3, native=native)
    assert np.array_equal(shared.class_of, class_of) and np.array_equal(shared.size, size)
