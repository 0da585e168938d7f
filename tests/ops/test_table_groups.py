"""A batch whose rows read different tables (`TableGroups`): one step equals each row's own.

Hypothesis draws batches of up to three groups, each with its own random tables over the same
vocabulary (states, classes and next states in and out of range), rows assigned to groups in any
order, and every per-row parameter over its whole range (the pools of ``test_extremes``). The
torch reference over the groups, and the per-group loop the fused kernels run under (with the
reference, and with the Triton kernel in its interpreter, as the step of each group), must give
every row the token, next state and flag that a step of its group's rows alone gives it.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regexlm import ops
from regexlm.ops import reference
from regexlm.ops.dispatch import step_per_group
from regexlm.ops.reference import sample_step_reference
from regexlm.ops.types import IndexTables, TableGroups
from tests.ops.test_extremes import (
    BUDGETS,
    INT32_MAX,
    MIN_TOKENS,
    NAN,
    PENALTIES,
    TEMPERATURES,
    logit,
)

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

PER_ROW = ("states", "budgets", "temperature", "top_k", "top_p", "repetition_penalty")


@st.composite
def tables_over(draw, V: int) -> IndexTables:
    S = draw(st.integers(1, 5))
    C = draw(st.integers(1, 6))
    ints = st.integers
    nbc = draw(st.lists(ints(-1, S - 1) | ints(-2, S + 1), min_size=S * C, max_size=S * C))
    class_of = draw(st.lists(ints(0, C - 1) | ints(-1, C), min_size=V, max_size=V))
    min_tokens = draw(st.lists(st.sampled_from(MIN_TOKENS), min_size=S, max_size=S))
    return IndexTables(
        torch.tensor(nbc, dtype=torch.int32).view(S, C),
        torch.tensor(class_of, dtype=torch.int32),
        torch.tensor(min_tokens, dtype=torch.int32),
    )


@st.composite
def grouped_steps(draw):
    """(inputs with ``tables`` a TableGroups, each row's group)."""
    G = draw(st.integers(1, 3))
    B = draw(st.integers(G, 6))
    V = draw(st.sampled_from([1, 3, 17, 33]))
    tables = [draw(tables_over(V)) for _ in range(G)]
    group_of = list(range(G)) + draw(
        st.lists(st.integers(0, G - 1), min_size=B - G, max_size=B - G)
    )
    group_of = draw(st.permutations(group_of))
    row = st.lists
    states = [
        draw(st.integers(0, tables[g].num_states - 1) | st.sampled_from([-1, INT32_MAX]))
        for g in group_of
    ]
    a = dict(
        logits=torch.tensor(draw(row(logit, min_size=B * V, max_size=B * V))).view(B, V),
        states=torch.tensor(states, dtype=torch.int32),
        budgets=torch.tensor(draw(row(st.sampled_from(BUDGETS), min_size=B, max_size=B))),
        temperature=torch.tensor(draw(row(st.sampled_from(TEMPERATURES), min_size=B, max_size=B))),
        top_k=torch.tensor(draw(row(st.integers(0, V + 1), min_size=B, max_size=B))),
        top_p=torch.tensor(
            draw(row(st.floats(0, 1) | st.sampled_from([1.0, NAN]), min_size=B, max_size=B))
        ),
        repetition_penalty=torch.tensor(
            draw(row(st.sampled_from(PENALTIES), min_size=B, max_size=B))
        ),
        seen=(
            torch.tensor(draw(row(st.booleans(), min_size=B * V, max_size=B * V))).view(B, V)
            if draw(st.booleans())
            else None
        ),
        seeds=torch.tensor(
            draw(row(st.integers(-(2**63), 2**63 - 1), min_size=B, max_size=B)), dtype=torch.int64
        ),
        steps=torch.tensor(draw(row(st.integers(0, 2**31 - 1), min_size=B, max_size=B))),
    )
    for key, dtype in (
        ("budgets", torch.int32),
        ("temperature", torch.float32),
        ("top_k", torch.int32),
        ("top_p", torch.float32),
        ("repetition_penalty", torch.float32),
        ("steps", torch.int32),
    ):
        a[key] = a[key].to(dtype)
    if draw(st.booleans()):  # pre-drawn noise instead of the in-step generator
        a["noise"] = torch.rand(B, V, generator=torch.Generator().manual_seed(B * V))
        a.pop("seeds")
        a.pop("steps")
    positions = tuple(tuple(b for b in range(B) if group_of[b] == g) for g in range(G))
    a["tables"] = TableGroups(tuple(tables), positions)
    return a


def _alone(a, g: int):
    """The step of group ``g``'s rows alone, with its own tables, as lists per row."""
    rows = torch.tensor(a["tables"].positions[g])
    sub = {
        k: (None if v is None else v.index_select(0, rows)) for k, v in a.items() if k != "tables"
    }
    result = sample_step_reference(**sub, tables=a["tables"].tables[g])
    return rows.tolist(), result


def _as_lists(result):
    return result.tokens.tolist(), result.next_states.tolist(), result.no_allowed.tolist()


@contextmanager
def passes_of(rows: int):
    """The CPU reference stepping ``rows`` rows a pass."""
    saved = reference.PASS_ROWS, reference.PASS_BYTES
    reference.PASS_ROWS, reference.PASS_BYTES = rows, 0
    try:
        yield
    finally:
        reference.PASS_ROWS, reference.PASS_BYTES = saved


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=grouped_steps(), rows=st.sampled_from([1, 2, 3]))
def test_a_step_over_groups_gives_each_row_what_its_group_alone_gives(a, rows):
    with passes_of(10**9):
        together = sample_step_reference(**a)
        per_group = step_per_group(sample_step_reference, **a)
        alone = [_alone(a, g) for g in range(len(a["tables"].tables))]
    with passes_of(rows):  # in passes of a few rows, group by group
        in_passes = sample_step_reference(**a)
    assert _as_lists(per_group) == _as_lists(together) == _as_lists(in_passes)
    tokens, states, empty = _as_lists(together)
    for positions, result in alone:
        assert [tokens[b] for b in positions] == result.tokens.tolist()
        assert [states[b] for b in positions] == result.next_states.tolist()
        assert [empty[b] for b in positions] == result.no_allowed.tolist()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=grouped_steps(), rows=st.sampled_from([1, 2, 4]))
def test_one_tables_stepped_in_passes_of_consecutive_rows_gives_the_same_rows(a, rows):
    a = dict(a, tables=a["tables"].tables[0])
    with passes_of(10**9):
        whole = sample_step_reference(**a)
    with passes_of(rows):
        assert _as_lists(sample_step_reference(**a)) == _as_lists(whole)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=grouped_steps())
def test_the_triton_kernel_run_per_group_agrees_with_the_reference(a):
    from regexlm.ops.sample_triton import sample_step_triton

    def triton_step(*args, **kw):
        return sample_step_triton(*args, **kw, block=16)

    assert _as_lists(step_per_group(triton_step, **a)) == _as_lists(sample_step_reference(**a))


def _batch(B: int, V: int = 8):
    tables = ops.IndexTables(
        torch.zeros(2, 2, dtype=torch.int32),
        torch.zeros(V, dtype=torch.int32),
        torch.zeros(2, dtype=torch.int32),
    )
    args = (
        torch.randn(B, V),
        torch.ones(B, dtype=torch.int32),
        torch.full((B,), -1, dtype=torch.int32),
        torch.ones(B),
        torch.zeros(B, dtype=torch.int32),
        torch.ones(B),
        torch.ones(B),
        None,
    )
    return tables, args


@pytest.mark.parametrize(
    "positions, message",
    [
        (((0, 1), (1, 2)), "exactly once"),
        (((0,), (2,)), "row 1 of 3 in no group"),
        (((0, 1, 2), ()), "has no rows"),
        (((0, 1), (2, 3)), "out of range"),
    ],
)
def test_groups_that_do_not_split_the_batch_are_refused(positions, message):
    tables, args = _batch(3)
    groups = TableGroups((tables,) * len(positions), positions)
    with pytest.raises(ValueError, match=message):
        ops.sample_step(*args, groups, seed=0)


def test_one_list_of_positions_per_tables():
    tables, _ = _batch(2)
    with pytest.raises(ValueError, match="one list of positions per tables"):
        TableGroups((tables, tables), ((0, 1),))


def test_every_groups_tables_are_checked():
    tables, args = _batch(2)
    short = ops.IndexTables(tables.next_by_class, tables.class_of[:5], tables.min_tokens)
    with pytest.raises(ValueError, match="index covers 5 tokens"):
        ops.sample_step(*args, TableGroups((tables, short), ((0,), (1,))), seed=0)
