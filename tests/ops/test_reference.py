"""The torch reference against its plain-loop statement and against transformers' processors."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from regexlm.ops.reference import (
    allowed_mask,
    apply_repetition_penalty,
    sample_step_reference,
    truncation_mask,
)
from regexlm.ops.testing import random_tables
from tests.ops.oracle import loop_step, mixed_case


@pytest.mark.parametrize("V", [37, 300])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("seeded", [False, True], ids=["noise", "seed"])
def test_reference_equals_plain_loop(V, dtype, seeded):
    for seed in range(12 if not seeded else 4):
        a = mixed_case(7, V, seed=seed, dtype=dtype)
        if seeded:
            a.pop("noise")
        r = sample_step_reference(**a)
        tokens, states, empty = loop_step(**a)
        assert r.tokens.tolist() == tokens
        assert r.next_states.tolist() == states
        assert r.no_allowed.tolist() == empty


def _transformers_scores(z_row, seen_ids, t, k, p, penalty):
    """transformers' processors in generation order on one row of masked logits."""
    scores = z_row.clone().unsqueeze(0)
    ids = torch.tensor([seen_ids], dtype=torch.long)
    if penalty != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(penalty)(ids, scores)
    scores = TemperatureLogitsWarper(t)(ids, scores)
    if k > 0:
        scores = TopKLogitsWarper(k)(ids, scores)
    if p < 1.0:
        scores = TopPLogitsWarper(p)(ids, scores)
    return scores[0]


@pytest.mark.parametrize(
    "t,k,p,penalty",
    [
        (1.0, 0, 0.9, 1.0),
        (0.7, 10, 1.0, 1.3),
        (1.3, 40, 0.75, 0.7),
        (0.5, 3, 0.99, 1.2),
        (1.0, 0, 0.2, 2.0),
        (2.0, 500, 0.5, 1.0),
    ],
)
def test_pipeline_matches_transformers_processors(t, k, p, penalty):
    V = 500
    tables = random_tables(6, V, 24, allow_prob=0.6, seed=3)
    g = torch.Generator().manual_seed(7)
    for trial in range(8):
        B = 4
        logits = torch.randn(B, V, generator=g) * 4
        states = torch.randint(1, 6, (B,), generator=g, dtype=torch.int32)
        seen = torch.rand(B, V, generator=g) < 0.1
        allowed = allowed_mask(states, torch.full((B,), -1, dtype=torch.int32), tables)
        pen = torch.full((B,), penalty)
        x = apply_repetition_penalty(logits, seen, pen)
        z = torch.where(allowed, x, -torch.inf) / t
        kept = truncation_mask(
            z, allowed, torch.full((B,), k, dtype=torch.int32), torch.full((B,), p)
        )
        for b in range(B):
            masked = torch.where(allowed[b], logits[b], -torch.inf)
            ref = _transformers_scores(
                masked, seen[b].nonzero().flatten().tolist(), t, k, p, penalty
            )
            assert torch.equal(torch.isfinite(ref), kept[b]), (trial, b)
            assert torch.equal(ref[kept[b]], z[b][kept[b]])


def test_budget_mask_keeps_only_tokens_that_still_reach_a_match():
    tables = random_tables(12, 200, 20, allow_prob=0.7, max_min_tokens=4, seed=5)
    s = torch.arange(1, 12, dtype=torch.int32)
    nxt = tables.next_by_class[s.long()][:, tables.class_of.long()]  # [B, V]
    grammar = nxt >= 0
    for R in range(0, 6):
        budgets = torch.full_like(s, R)
        got = allowed_mask(s, budgets, tables)
        fits = tables.min_tokens[s.long()] <= R
        reach = grammar & (tables.min_tokens[nxt.clamp(min=0).long()] <= R - 1)
        want = torch.where(fits.unsqueeze(1), reach, grammar)
        assert torch.equal(got, want)
    # a negative budget never masks
    assert torch.equal(allowed_mask(s, torch.full_like(s, -1), tables), grammar)


def test_seeded_draws_are_reproducible_and_step_dependent():
    a = mixed_case(6, 300, seed=1)
    a.pop("noise")
    a["temperature"] = torch.full((6,), 3.0)
    a["top_k"] = torch.zeros(6, dtype=torch.int32)
    a["top_p"] = torch.ones(6)
    a["budgets"] = torch.full((6,), -1, dtype=torch.int32)
    first = sample_step_reference(**a).tokens
    assert torch.equal(first, sample_step_reference(**a).tokens)
    others = [sample_step_reference(**{**a, "steps": a["steps"] + s}).tokens for s in range(1, 5)]
    assert any(not torch.equal(first, o) for o in others)


@pytest.mark.parametrize("seeded", [False, True], ids=["noise", "seed"])
def test_small_top_k_path_gives_the_general_paths_tokens(seeded, monkeypatch):
    import regexlm.ops.reference as ref

    g = torch.Generator().manual_seed(21)
    real = ref._small_top_k
    taken = []

    def counting(*args):
        out = real(*args)
        taken.append(out is not None)
        return out

    for trial in range(6):
        a = mixed_case(6, 700, seed=50 + trial)
        a["temperature"] = torch.rand(6, generator=g) + 0.3
        a["top_k"] = torch.randint(1, 60, (6,), generator=g, dtype=torch.int32)
        p = torch.rand(6, generator=g)
        a["top_p"] = torch.where(torch.rand(6, generator=g) < 0.5, torch.ones(6), p)
        a["budgets"] = torch.full((6,), -1, dtype=torch.int32)
        a["states"] = torch.full((6,), 1 + trial % 7, dtype=torch.int32)
        if seeded:
            a.pop("noise")
        monkeypatch.setattr(ref, "_small_top_k", counting)
        fast = sample_step_reference(**a)
        monkeypatch.setattr(ref, "_small_top_k", lambda *args: None)
        general = sample_step_reference(**a)
        assert torch.equal(fast.tokens, general.tokens), trial
        assert torch.equal(fast.next_states, general.next_states), trial
    assert sum(taken) >= 4  # the short path really ran
