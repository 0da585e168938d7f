"""The budget rule with ``min_tokens`` an upper bound, as lazily built indexes give it.

``min_tokens`` may be any consistent upper bound on the fewest tokens to a match: 0 exactly at
matches, and at a state with ``0 < m[s] < INT32_MAX`` some allowed token leads to a state with
``m <= m[s] - 1``; INT32_MAX means "no match reachable" (a bound that gave up). Under the rule
of ARCHITECTURE.md, a walk that starts with a match within its budget then keeps one within the
budget left after every token, never runs out of allowed tokens before it matches, and ends on a
match when the budget is spent, whatever the logits and sampling parameters; and the three
backends walk the same path.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regexlm.ops.types import INT32_MAX, IndexTables
from tests.ops import emulated_cuda
from tests.ops.oracle import run_backend

BACKENDS = ["torch", "triton"] + (["cuda-emu"] if emulated_cuda.available() else [])


@st.composite
def bounded_tables(draw):
    """Random tables whose min_tokens is a consistent upper bound (some states at INT32_MAX)."""
    S = draw(st.integers(2, 7))
    C = draw(st.integers(1, 5))
    V = draw(st.integers(C, 3 * C + 2))
    nbc = [[draw(st.integers(-1, S - 1)) for _ in range(C)] for _ in range(S)]
    matches = set(draw(st.lists(st.integers(0, S - 1), min_size=1, max_size=S)))
    # exact distances to a match, then a bound built on a witness successor per state
    dist = {s: 0 for s in matches}
    witness = {}
    frontier = sorted(matches)
    while frontier:
        nxt_frontier = []
        for s in range(S):
            if s in dist:
                continue
            for c in range(C):
                w = nbc[s][c]
                if w in frontier:
                    dist[s], witness[s] = dist[w] + 1, w
                    nxt_frontier.append(s)
                    break
        frontier = nxt_frontier
    bound = {s: 0 for s in matches}
    for s in sorted(witness, key=dist.get):
        slack = draw(st.sampled_from([0, 0, 1, 3, INT32_MAX]))
        bound[s] = min(INT32_MAX, bound[witness[s]] + 1 + slack)
    min_tokens = [bound.get(s, INT32_MAX) for s in range(S)]
    class_of = list(range(C)) + [draw(st.integers(0, C - 1)) for _ in range(V - C)]
    tables = IndexTables(
        torch.tensor(nbc, dtype=torch.int32),
        torch.tensor(class_of, dtype=torch.int32),
        torch.tensor(min_tokens, dtype=torch.int32),
    )
    return tables, matches


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    case=bounded_tables(),
    start=st.integers(0, 6),
    slack=st.integers(0, 3),
    temperature=st.sampled_from([0.0, 0.7, 1.0, 5.0]),
    top_k=st.sampled_from([0, 1, 2]),
    seed=st.integers(0, 2**63 - 1),
)
def test_a_walk_within_its_budget_ends_on_a_match(case, start, slack, temperature, top_k, seed):
    tables, matches = case
    S = tables.next_by_class.shape[0]
    state = start % S
    m0 = int(tables.min_tokens[state])
    if m0 >= INT32_MAX:
        return  # no match reachable: only the viable mask applies (covered elsewhere)
    budget = m0 + slack
    V = tables.class_of.shape[0]
    g = torch.Generator().manual_seed(seed % 2**32)
    for step in range(budget):
        a = dict(
            logits=torch.randn(1, V, generator=g) * 4,
            states=torch.tensor([state], dtype=torch.int32),
            budgets=torch.tensor([budget - step], dtype=torch.int32),
            temperature=torch.tensor([temperature]),
            top_k=torch.tensor([top_k], dtype=torch.int32),
            top_p=torch.tensor([0.9]),
            repetition_penalty=torch.tensor([1.0]),
            seen=None,
            tables=tables,
            seeds=torch.tensor([seed]),
            steps=torch.tensor([step], dtype=torch.int32),
        )
        results = [run_backend(name, a) for name in BACKENDS]
        r = results[0]
        for other in results[1:]:
            assert other.tokens.tolist() == r.tokens.tolist()
            assert other.next_states.tolist() == r.next_states.tolist()
        if bool(r.no_allowed[0]):
            assert state in matches  # only a match may have nowhere to go
            return
        state = int(r.next_states[0])
        left = budget - step - 1
        assert int(tables.min_tokens[state]) <= left  # a match still fits in what is left
    assert state in matches
