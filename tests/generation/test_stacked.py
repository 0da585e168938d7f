"""Rows of different patterns step through one stacked table; it must act as each index alone."""

from __future__ import annotations

import torch

from regexlm.generation import GenerationRequest
from regexlm.generation import stacked as stacked_module
from regexlm.generation.stacked import stack_indexes
from tests.generation.conftest import REALISTIC


def test_stacked_tables_act_as_each_index(tiny_generator):
    indexes = [tiny_generator.compile(p) for p, _ in REALISTIC[:6]]
    stacked = stack_indexes(indexes)
    assert stacked is not None and stack_indexes(indexes) is stacked  # cached
    V = indexes[0].vocab_size
    tokens = torch.randint(0, V, (4000,), generator=torch.Generator().manual_seed(0))
    for index, offset in zip(indexes, stacked.offsets, strict=True):
        for state in range(index.num_states):
            local = index.next_by_class[state, index.class_of[tokens]]  # [n]
            joint = stacked.next_by_class[offset + state, stacked.class_of[tokens]]  # [n]
            assert torch.equal(torch.where(local >= 0, local + offset, local), joint)
            assert torch.equal(stacked.bitmask[offset + state], index.bitmask[state])
            assert stacked.min_tokens[offset + state] == index.min_tokens[state]


def _mixed_requests():
    patterns = [p for p, _ in REALISTIC]
    return [
        GenerationRequest(
            prompt,
            patterns[i % len(patterns)],
            max_new_tokens=4 + i % 9,
            stop_after_match=bool(i % 2),
            temperature=[0.0, 0.8, 1.5][i % 3],
            top_k=[0, 5, 50][i % 3],
            top_p=[1.0, 0.9, 0.5][i % 3],
            repetition_penalty=[1.0, 1.3, 0.8][i % 3],
            seed=i,
        )
        for i, prompt in enumerate(["a", "The date is ", "", "日本", "x y z", "Email: "] * 3)
    ]


def test_stacked_step_equals_one_call_per_index(tiny_generator, monkeypatch):
    requests = _mixed_requests()
    together = tiny_generator.generate_batch(requests)
    monkeypatch.setattr(stacked_module, "MAX_ENTRIES", 0)
    monkeypatch.setattr(stacked_module, "_cache", type(stacked_module._cache)())
    assert stack_indexes([tiny_generator.compile(p) for p in ("a", "b")]) is None
    separately = tiny_generator.generate_batch(requests)
    for a, b in zip(together, separately, strict=True):
        assert a.token_ids == b.token_ids and a.stop_reason == b.stop_reason
