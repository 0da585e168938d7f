"""Compile builds the start row; the exploration beyond it waits for the index's first use.

The first mask (the start state's) must not depend on when the exploration runs: it is the
start row with every target left out that no single-byte path completes, which is what the
settled index allows too whenever the vocabulary spells each byte the pattern needs alone, and
never more than it allows. State ids are stable for the start (0) across the exploration, and
threads that ask for the start mask or the tables while another explores see settled tables.
"""

from __future__ import annotations

import threading
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings

import regexlm
from regexlm.automata.native_lazy import NativeLazyDFA
from regexlm.errors import RegexError
from tests.strategies import ASCII_ALPHABET, regex_patterns

PATTERNS = [r"[a-z]+@[a-z]+\.com", r"-?(0|[1-9][0-9]*)", r"\w{1,50}", r"(red|green|blue)"]


def _bits(mask: torch.Tensor) -> np.ndarray:
    return np.unpackbits(mask.numpy().view(np.uint8), bitorder="little").astype(bool)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regex_patterns())
def test_the_first_mask_never_allows_more_than_the_settled_one(smollm2_vocab, pattern):
    try:
        index = regexlm.compile(pattern, smollm2_vocab, cache=False)
    except RegexError:
        assume(False)
    first = _bits(index.bitmask_rows([index.start_state])[0])
    index.settle()
    assert index.settled and index.start_state == 0
    settled = _bits(index.bitmask_rows([index.start_state])[0])
    assert not (first & ~settled).any()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regex_patterns(alphabet=ASCII_ALPHABET, unicode_classes=False))
def test_the_first_mask_is_the_settled_one_on_printable_text(smollm2_vocab, pattern):
    # every byte of these patterns' alphabet is a token of its own
    assume("[^" not in pattern and "." not in pattern.replace("\\.", ""))
    try:
        index = regexlm.compile(pattern, smollm2_vocab, cache=False)
    except RegexError:
        assume(False)
    first = index.bitmask_rows([index.start_state])
    index.settle()
    assert torch.equal(first, index.bitmask_rows([index.start_state]))


def _settled_tables(index) -> dict[str, np.ndarray]:
    index.settle()
    return index.host_tables()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=regex_patterns())
def test_the_settled_index_does_not_depend_on_the_distances_waiting(smollm2_vocab, pattern):
    """Compile leaves the byte distances for the first use where every state's is finite; the
    settled tables (exact or bounded ``min_tokens`` included) are what they are when compile
    finds the distances at once."""
    try:
        index = regexlm.compile(pattern, smollm2_vocab, cache=False, mode="auto")
    except RegexError:
        assume(False)
    waited = index._rows.distances_later
    with mock.patch.object(NativeLazyDFA, "spells_every_label", return_value=False):
        at_once = regexlm.compile(pattern, smollm2_vocab, cache=False, mode="auto")
    assert not at_once._rows.distances_later
    first = index.bitmask_rows([index.start_state])
    assert torch.equal(first, at_once.bitmask_rows([at_once.start_state]))
    got, expected = _settled_tables(index), _settled_tables(at_once)
    assert not index._rows.distances_later
    assert got.keys() == expected.keys()
    for name in got:
        assert np.array_equal(got[name], expected[name]), (pattern, name, waited)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_compile_leaves_the_distances_to_the_first_use_where_they_are_finite(
    smollm2_vocab, pattern
):
    index = regexlm.compile(pattern, smollm2_vocab, cache=False, mode="auto")
    assert index._rows.distances_later
    assert index.min_tokens_to_match(index.start_state) > 0  # found at settle
    assert not index._rows.distances_later


def test_a_label_no_single_byte_spells_has_its_distances_found_at_compile(smollm2_vocab):
    # \x04 is no token of its own; "b" is, so the pattern compiles, with its bounds at once
    index = regexlm.compile("b|a\x04", smollm2_vocab, cache=False, mode="auto")
    assert not index._rows.distances_later
    index.settle()
    assert index.min_tokens_to_match(index.start_state) == 1


@pytest.mark.parametrize("pattern", PATTERNS)
def test_compile_leaves_the_exploration_to_the_first_use(smollm2_vocab, pattern):
    index = regexlm.compile(pattern, smollm2_vocab, cache=False)
    assert not index.settled
    index.bitmask_rows([index.start_state])
    assert not index.settled  # the start mask alone needs no exploration
    tables = index.row_of  # what a decode step reads
    assert index.settled and tables.shape[0] == index.num_states
    assert index.info["exact"] == index.exact and index.info["walked"] > 0
    again = regexlm.compile(pattern, smollm2_vocab, cache=False, mode="auto")
    assert again.min_tokens_to_match(again.start_state) == index.min_tokens_to_match(0)


def test_a_pattern_no_token_can_complete_is_refused_at_compile(smollm2_vocab):
    # \x04 is no token of its own: only the exploration can tell that nothing spells it
    with pytest.raises(RegexError):
        regexlm.compile("\x04", smollm2_vocab, cache=False)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_readers_in_other_threads_wait_for_an_exploration_in_progress(smollm2_vocab, pattern):
    reference = regexlm.compile(pattern, smollm2_vocab, cache=False).settle()
    index = regexlm.compile(pattern, smollm2_vocab, cache=False)
    seen = {}
    barrier = threading.Barrier(3)

    def settle():
        barrier.wait()
        index.settle()

    def read_tables():
        barrier.wait()
        seen["min_tokens"] = index.min_tokens.clone()
        seen["next_by_class"] = index.next_by_class.clone()
        seen["row_of"] = index.row_of.clone()

    def read_start_mask():
        barrier.wait()
        seen["mask"] = index.bitmask_rows([index.start_state])

    threads = [threading.Thread(target=f) for f in (settle, read_tables, read_start_mask)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(seen["min_tokens"], reference.min_tokens)
    assert torch.equal(seen["next_by_class"], reference.next_by_class)
    assert torch.equal(seen["row_of"], reference.row_of)
    assert torch.equal(seen["mask"], reference.bitmask_rows([0]))
