"""The synthetic-table helpers the tests and benchmarks share."""

from __future__ import annotations

import torch

from regexlm.ops.testing import pack_bitmask, random_tables, unpack_bitmask


def test_pack_unpack_bitmask_roundtrip_and_bit31():
    g = torch.Generator().manual_seed(0)
    allowed = torch.rand(5, 70, generator=g) < 0.5
    allowed[:, 31] = True  # the sign bit of word 0
    words = pack_bitmask(allowed)
    assert words.shape == (5, 3) and (words[:, 0] < 0).all()
    assert torch.equal(unpack_bitmask(words, 70), allowed)


def test_random_tables_are_in_range_and_state_zero_allows_nothing():
    t = random_tables(9, 101, 12, seed=3)
    assert t.next_by_class.shape == (9, 12) and t.class_of.shape == (101,)
    assert int(t.next_by_class.min()) >= -1 and int(t.next_by_class.max()) < 9
    assert int(t.class_of.min()) >= 0 and int(t.class_of.max()) < 12
    assert (t.next_by_class[0] == -1).all() and (t.next_by_class[1:] >= 0).any()
