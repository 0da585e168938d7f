"""The counter-based generator: the torch version equals its integer definition everywhere, its
numbers are uniform and unrelated across neighbouring tokens, rows and steps, and a row's numbers
depend on nothing but its seed, step and token id."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from regexlm.ops.noise import (
    FLT_MIN,
    U_MAX,
    U_SCALE,
    as_int32,
    as_int64,
    clamp_noise,
    mix32,
    mix32_tensor,
    row_keys,
    seed_rows,
    token_uniform,
    uniform,
    uniform_noise,
)
from tests.ops.oracle import chi_square_pvalue

INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)


@settings(max_examples=60, deadline=None)
@given(
    seeds=st.lists(INT64 | st.sampled_from([0, -1, 2**63 - 1, -(2**63)]), min_size=1, max_size=4),
    step=INT32 | st.sampled_from([0, -1, 2**31 - 1, -(2**31)]),
    tokens=st.lists(st.integers(0, 2**31 - 1) | st.sampled_from([0, 1, 2**31 - 1]), max_size=8),
)
def test_torch_generator_equals_its_integer_definition(seeds, step, tokens):
    B = len(seeds)
    s = torch.tensor(seeds, dtype=torch.int64)
    t = torch.full((B,), step, dtype=torch.int32)
    k0, k1 = row_keys(s, t)
    ids = torch.tensor(tokens, dtype=torch.int64)
    got = token_uniform(k0.unsqueeze(1), k1.unsqueeze(1), ids.unsqueeze(0))  # [B, n]
    for b, seed in enumerate(seeds):
        assert got[b].tolist() == [uniform(seed, step, i) for i in tokens]


def test_mix32_is_a_bijection_and_the_tensor_form_agrees():
    x = torch.randint(0, 2**32, (1 << 16,), generator=torch.Generator().manual_seed(0))
    x = torch.cat([x, torch.tensor([0, 1, 2**31, 2**32 - 1])])
    y = mix32_tensor(x)
    assert y.tolist() == [mix32(v) for v in x.tolist()]
    assert int(y.min()) >= 0 and int(y.max()) < 2**32
    # a bijection: distinct inputs stay distinct (here, on 2^16 consecutive values)
    consecutive = mix32_tensor(torch.arange(1 << 16, dtype=torch.int64))
    assert consecutive.unique().numel() == 1 << 16


def test_uniform_values_are_odd_multiples_of_2_to_minus_24_inside_zero_one():
    u = uniform_noise(torch.tensor([0, -1, 7]), torch.tensor([0, 5, -3]), 1 << 15)  # [3, V]
    assert u.dtype == torch.float32
    assert float(u.min()) >= U_SCALE and float(u.max()) <= U_MAX
    n = (u.double() / U_SCALE).round()
    assert torch.equal(n, u.double() / U_SCALE) and bool((n.long() % 2 == 1).all())
    assert uniform(0, 0, 0) == float(u[0, 0])


def test_numbers_are_uniform_along_tokens_across_rows_and_across_steps():
    bins = 64
    probs = torch.full((bins,), 1.0 / bins)

    def pvalue(u):
        counts = torch.bincount((u * bins).long().flatten(), minlength=bins)
        return chi_square_pvalue(counts, probs)

    along = uniform_noise(torch.tensor([12345]), torch.tensor([0]), 1 << 15)[0]
    across_rows = uniform_noise(torch.arange(1 << 14), torch.zeros(1 << 14), 2)  # [rows, 2]
    across_steps = uniform_noise(torch.full((1 << 14,), 99), torch.arange(1 << 14), 1)
    for u in (along, across_rows[:, 0], across_rows[:, 1], across_steps[:, 0]):
        assert pvalue(u) > 1e-4
    # neighbours: pairs (u[t], u[t + 1]) fill an 8 x 8 grid evenly, and are uncorrelated
    pairs = (along[:-1] * 8).long() * 8 + (along[1:] * 8).long()
    assert chi_square_pvalue(torch.bincount(pairs, minlength=64), torch.full((64,), 1 / 64)) > 1e-4
    assert abs(float(torch.corrcoef(torch.stack([along[:-1], along[1:]]))[0, 1])) < 0.03
    # seeds s and s + 1 (the scalar-seed rows), and steps t and t + 1, are unrelated streams
    a, b = uniform_noise(torch.tensor([5, 6]), torch.tensor([0, 0]), 1 << 14)
    c = uniform_noise(torch.tensor([5]), torch.tensor([1]), 1 << 14)[0]
    for other in (b, c):
        assert abs(float(torch.corrcoef(torch.stack([a, other]))[0, 1])) < 0.05


def test_a_rows_numbers_do_not_depend_on_its_batch():
    seeds = torch.tensor([3, -8, 2**62, 3])
    steps = torch.tensor([1, 1, 9, 1], dtype=torch.int32)
    whole = uniform_noise(seeds, steps, 257)
    for b in range(4):
        alone = uniform_noise(seeds[b : b + 1], steps[b : b + 1], 257)[0]
        assert torch.equal(whole[b], alone)
    assert torch.equal(whole[0], whole[3])  # same seed and step: the same numbers
    assert not torch.equal(whole[0], whole[1])


def test_explicit_noise_is_read_nan_as_half_and_clamped_inside_zero_one():
    u = torch.tensor([float("nan"), 0.0, -1.0, 1e-45, 0.3, 1.0, 2.0, float("inf"), -float("inf")])
    got = clamp_noise(u).tolist()
    assert got == [0.5, FLT_MIN, FLT_MIN, FLT_MIN, torch.tensor(0.3).item(), U_MAX, U_MAX, U_MAX,
                   FLT_MIN]  # fmt: skip
    assert torch.isfinite(torch.log(-torch.log(clamp_noise(u)))).all()


def test_scalar_seeds_and_steps_wrap_to_the_device_integer_types():
    assert as_int64(2**64 + 5) == 5 and as_int64(2**63) == -(2**63) and as_int64(-1) == -1
    assert as_int32(2**31) == -(2**31) and as_int32(2**32 + 7) == 7
    assert seed_rows(2**63 - 1, 3, "cpu").tolist() == [2**63 - 1, -(2**63), -(2**63) + 1]
    assert uniform(2**64 + 5, 2**32 + 1, 3) == uniform(5, 1, 3)
