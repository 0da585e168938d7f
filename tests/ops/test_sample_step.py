"""Edge cases of one step, run on every backend this machine can run (Triton: its interpreter)."""

from __future__ import annotations

import pytest
import torch

from regexlm.ops.types import IndexTables
from tests.ops.oracle import (
    backend_params,
    loop_step,
    mixed_case,
    run_backend,
    shared_rows,
    simple_inputs,
    single_state_tables,
)

BACKENDS = backend_params()


def _rows(row, B):
    return torch.tensor(row, dtype=torch.float32).repeat(B, 1)


def _noise(B, V, seed=1):
    return torch.rand(B, V, generator=torch.Generator().manual_seed(seed)).clamp(min=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_topk_keeps_ties_at_the_boundary(backend):
    V, B = 37, 24
    row = [0.0] * V
    row[3], row[10], row[11], row[20] = 5.0, 4.0, 4.0, 4.0
    row[30] = 3.9
    a = simple_inputs(_rows(row, B), top_k=2, temperature=8.0, noise=_noise(B, V))
    drawn = set(run_backend(backend, a).tokens.tolist())
    assert drawn == {3, 10, 11, 20}


@pytest.mark.parametrize("backend", BACKENDS)
def test_topk_at_least_allowed_and_zero_disable_truncation(backend):
    V, B = 37, 12
    allowed = torch.zeros(V, dtype=torch.bool)
    allowed[[1, 4, 9, 22, 36]] = True
    tables = single_state_tables(allowed)
    logits = torch.randn(B, V, generator=torch.Generator().manual_seed(2))
    noise = _noise(B, V)
    base = run_backend(backend, simple_inputs(logits, tables, top_k=0, noise=noise)).tokens
    for k in (5, 6, 1000):
        got = run_backend(backend, simple_inputs(logits, tables, top_k=k, noise=noise)).tokens
        assert torch.equal(got, base)
    assert set(base.tolist()) <= {1, 4, 9, 22, 36}
    assert len(set(base.tolist())) >= 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_top_p_one_is_no_truncation_and_tiny_top_p_is_argmax(backend):
    V, B = 37, 12
    logits = torch.randn(B, V, generator=torch.Generator().manual_seed(3))
    noise = _noise(B, V)
    full = run_backend(backend, simple_inputs(logits, top_p=1.0, noise=noise)).tokens
    plain = run_backend(backend, simple_inputs(logits, noise=noise)).tokens
    assert torch.equal(full, plain)
    tiny = run_backend(backend, simple_inputs(logits, top_p=1e-7, noise=noise)).tokens
    assert torch.equal(tiny, logits.argmax(1))
    assert not torch.equal(plain, logits.argmax(1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_temperature_zero_is_argmax_with_lowest_id_on_ties(backend):
    V = 37
    row = [0.0] * V
    row[9], row[5], row[30] = 2.5, 2.5, 2.5
    a = simple_inputs(_rows(row, 2), temperature=0.0)
    assert run_backend(backend, a).tokens.tolist() == [5, 5]
    allowed = torch.ones(V, dtype=torch.bool)
    allowed[5] = False
    a = simple_inputs(_rows(row, 1), single_state_tables(allowed), temperature=0.0)
    assert run_backend(backend, a).tokens.tolist() == [9]


@pytest.mark.parametrize("backend", BACKENDS)
def test_repetition_penalty_divides_positive_and_multiplies_negative(backend):
    V = 37
    row = [-9.0] * V
    row[0], row[1] = 2.0, 1.5  # seen positive 2.0 / 2 = 1.0 < 1.5
    row[2], row[3] = -1.0, -1.5  # seen negative -1.0 * 2 = -2.0 < -1.5
    seen = torch.zeros(2, V, dtype=torch.bool)
    seen[:, 0] = True
    seen[:, 2] = True
    allowed = torch.zeros(V, dtype=torch.bool)
    allowed[[0, 1]] = True
    pos = simple_inputs(
        _rows(row, 2),
        single_state_tables(allowed),
        temperature=0.0,
        repetition_penalty=torch.tensor([2.0, 1.0]),
        seen=seen,
    )
    assert run_backend(backend, pos).tokens.tolist() == [1, 0]
    allowed = torch.zeros(V, dtype=torch.bool)
    allowed[[2, 3]] = True
    neg = simple_inputs(
        _rows(row, 2),
        single_state_tables(allowed),
        temperature=0.0,
        repetition_penalty=torch.tensor([2.0, 1.0]),
        seen=seen,
    )
    assert run_backend(backend, neg).tokens.tolist() == [3, 2]
    # a penalty below 1 favours seen tokens: 1.5 vs 2.0 * ... -> seen 1.0 / 0.5 = 2.0
    row2 = list(row)
    row2[0] = 1.0
    allowed = torch.zeros(V, dtype=torch.bool)
    allowed[[0, 1]] = True
    low = simple_inputs(
        _rows(row2, 1),
        single_state_tables(allowed),
        temperature=0.0,
        repetition_penalty=0.5,
        seen=seen[:1],
    )
    assert run_backend(backend, low).tokens.tolist() == [0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_allowed_token_is_always_drawn(backend):
    V, B = 1000, 3
    allowed = torch.zeros(V, dtype=torch.bool)
    allowed[777] = True
    logits = torch.randn(B, V, generator=torch.Generator().manual_seed(4))
    logits[:, 777] = -50.0
    a = simple_inputs(
        logits,
        single_state_tables(allowed),
        top_k=torch.tensor([0, 1, 5]),
        top_p=torch.tensor([0.1, 1.0, 0.5]),
        temperature=torch.tensor([1.0, 0.0, 2.0]),
    )
    r = run_backend(backend, a)
    assert r.tokens.tolist() == [777] * B
    assert r.next_states.tolist() == [1] * B
    assert r.no_allowed.tolist() == [False] * B


@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_logits_give_the_tokens_of_their_fp32_values(backend):
    V, B = 1000, 3
    logits = (torch.randn(B, V, generator=torch.Generator().manual_seed(5)) * 3).to(torch.bfloat16)
    kw = dict(
        top_k=torch.tensor([0, 40, 7]),
        top_p=torch.tensor([0.9, 1.0, 0.5]),
        temperature=torch.tensor([0.8, 1.2, 0.0]),
    )
    r16 = run_backend(backend, simple_inputs(logits, **kw))
    r32 = run_backend(backend, simple_inputs(logits.float(), **kw))
    assert torch.equal(r16.tokens, r32.tokens)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_with_different_parameters_match_rows_run_alone(backend):
    from tests.ops.oracle import mixed_case

    a = mixed_case(7, 300, seed=9)
    whole = run_backend(backend, a)
    for b in range(7):
        one = {
            k: (v[b : b + 1] if torch.is_tensor(v) and v.dim() >= 1 else v) for k, v in a.items()
        }
        r = run_backend(backend, one)
        assert r.tokens.item() == whole.tokens[b].item()
        assert r.next_states.item() == whole.next_states[b].item()


def _budget_tables(V=37):
    # state 1 (2 tokens from a match): token 4 -> state 2 (1 to go), token 7 -> state 3 (5 to go),
    # token 9 -> state 4 (a match). States 2..4 allow nothing (they are never entered here).
    nbc = torch.full((5, V), -1, dtype=torch.int32)
    nbc[1, 4], nbc[1, 7], nbc[1, 9] = 2, 3, 4
    min_tokens = torch.tensor([99, 2, 1, 5, 0], dtype=torch.int32)
    return IndexTables(nbc, torch.arange(V, dtype=torch.int32), min_tokens)


@pytest.mark.parametrize("backend", BACKENDS)
def test_budget_masks_tokens_that_can_no_longer_reach_a_match(backend):
    V = 37
    tables = _budget_tables(V)
    logits = torch.zeros(5, V)
    logits[:, 7] = 10.0  # the model wants the token that leads away from a match
    logits[:, 4] = 5.0
    budgets = torch.tensor([2, 1, 6, -1, 3], dtype=torch.int32)
    a = simple_inputs(logits, tables, temperature=0.0, budgets=budgets)
    r = run_backend(backend, a)
    # R=2: 4 (1 left <= 1) and 9 (0) fit, 7 (5) does not; R=1: a match fits only if
    # min_tokens[1]=2 <= 1, which is false, so no budget masking: 7 wins; R=6: 7 fits;
    # R=-1: no budget; R=3: 7 needs 5 > 2.
    assert r.tokens.tolist() == [4, 7, 7, 7, 4]
    assert r.next_states.tolist() == [2, 3, 3, 3, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_row_without_allowed_token_is_flagged_and_keeps_its_state(backend):
    V = 37
    tables = _budget_tables(V)
    logits = torch.randn(3, V, generator=torch.Generator().manual_seed(6))
    states = torch.tensor([1, 2, 1], dtype=torch.int32)  # state 2 allows nothing
    budgets = torch.tensor([-1, -1, 0], dtype=torch.int32)  # R=0 at min_tokens 2: no masking
    a = simple_inputs(logits, tables, states=states, budgets=budgets, top_k=2, top_p=0.5)
    r = run_backend(backend, a)
    assert r.no_allowed.tolist() == [False, True, False]
    assert r.tokens[1].item() == -1
    assert r.next_states[1].item() == 2
    assert r.tokens[0].item() in (4, 7, 9)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy on inf / NaN
@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_rows_take_the_greedy_token(backend):
    """No finite processed score: the allowed token with the largest penalised logit (NaN read
    as -inf), lowest id on ties; the lowest allowed id when every allowed logit is -inf/NaN."""
    inf, nan = float("inf"), float("nan")
    V = 37
    allowed = torch.zeros(V, dtype=torch.bool)
    allowed[[3, 8, 20, 30]] = True
    rows = torch.zeros(6, V)
    rows[:, 0] = 50.0  # never allowed: it must not win whatever happens
    rows[0, [3, 8, 20, 30]] = torch.tensor([-inf, -inf, -inf, -inf])  # all -inf -> 3
    rows[1, [3, 8, 20, 30]] = torch.tensor([nan, nan, -inf, nan])  # NaN is -inf -> 3
    rows[2, [3, 8, 20, 30]] = torch.tensor([nan, 1.0, 2.0, 2.0])  # greedy -> 20
    rows[3, [3, 8, 20, 30]] = torch.tensor([1.0, 5.0, 4.0, 6.0])  # tiny T: 1/1e-38 ... -> 30
    rows[4, [3, 8, 20, 30]] = torch.tensor([inf, 2.0, inf, 1.0])  # +inf logits -> 3
    rows[5, [3, 8, 20, 30]] = torch.tensor([1.0, nan, 2.0, -inf])  # NaN temperature -> 20
    temperature = torch.tensor([1.0, 0.7, 0.0, 1e-38, 2.0, nan])
    a = simple_inputs(rows, single_state_tables(allowed), temperature=temperature, top_k=2)
    r = run_backend(backend, a)
    assert r.tokens.tolist() == [3, 3, 20, 30, 3, 20]
    assert r.next_states.tolist() == [1] * 6 and r.no_allowed.tolist() == [False] * 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_states_classes_and_next_states_are_never_allowed(backend):
    V = 37
    class_of = torch.arange(V, dtype=torch.int32) % 4
    class_of[5], class_of[6] = -3, 99  # outside [0, C): never allowed
    nbc = torch.tensor([[1, 1, 1, 1], [1, 7, -2, 0]], dtype=torch.int32)  # 7, -2: not states
    tables = IndexTables(nbc, class_of, torch.tensor([0, 0], dtype=torch.int32))
    logits = torch.zeros(4, V)
    logits[:, 5], logits[:, 6], logits[:, 1], logits[:, 2] = 9.0, 9.0, 8.0, 8.0
    states = torch.tensor([1, -1, 2, 2**31 - 1], dtype=torch.int32)
    budgets = torch.tensor([2**31 - 1, 3, -(2**31), 0], dtype=torch.int32)
    r = run_backend(backend, simple_inputs(logits, tables, states=states, budgets=budgets))
    # row 0: only classes 0 and 3 lead to states; logits favour 5, 6 (bad class), 1, 2 (bad next)
    assert r.tokens[0].item() % 4 in (0, 3) and r.tokens[0].item() not in (5, 6)
    assert r.next_states[0].item() in (0, 1) and not r.no_allowed[0]
    assert r.tokens[1:].tolist() == [-1, -1, -1] and r.no_allowed[1:].all()
    assert r.next_states[1:].tolist() == [-1, 2, 2**31 - 1]  # states kept as they were


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_read_through_row_of_step_as_the_dense_table(backend):
    # a lazy index stores a row per built state only: states share rows through row_of, and a
    # state whose row is out of range allows nothing, like one whose row allows nothing
    for seed in range(3):
        a = mixed_case(6, 53, seed=seed, num_states=12)
        a["states"] = torch.tensor([0, 3, 11, 5, -1, 12], dtype=torch.int32)
        want = run_backend(backend, a)
        shared = {**a, "tables": shared_rows(a["tables"], seed=seed)}
        assert (shared["tables"].row_of != torch.arange(12)).any()
        got = run_backend(backend, shared)
        assert got.tokens.tolist() == want.tokens.tolist(), seed
        assert got.next_states.tolist() == want.next_states.tolist(), seed
        assert got.no_allowed.tolist() == want.no_allowed.tolist(), seed
        assert (got.tokens.tolist(), got.next_states.tolist(), got.no_allowed.tolist()) == (
            loop_step(**shared)
        )
