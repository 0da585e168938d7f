"""Token classes refined row by row: two tokens share a class exactly when no row so far tells
them apart, and every row read through the classes gives each token its own value."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from regexlm.index.token_classes import EOS_CLASS, NEVER_CLASS, TokenClasses


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
    assert np.array_equal(table[:, c[shadows]], table[:, c[shadowed]])
