"""Both real tokenizers against the brute-force oracle: zero false allows, zero false denies.

The oracle (:mod:`tests.index.oracle`) walks every token's bytes through the full DFA from
every DFA state, then computes token-level reachability and distances by plain iteration.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regexlm.automata import compile_regex as _compile_regex
from regexlm.index import build_index
from tests.index.oracle import compare, unpack


def compile_regex(pattern):
    # a generous time limit: on a loaded machine the Unicode classes can take over a second
    return _compile_regex(pattern, timeout=60)


EXACT = dict.fromkeys(["false_allow", "false_deny", "wrong_next", "eos", "min_tokens", "states"], 0)

PATTERNS = [
    r"[0-9]{3}-[0-9]{4}",
    r"[a-z]+@[a-z]+\.com",
    r"(true|false|null)",
    r"-?(0|[1-9][0-9]*)(\.[0-9]+)?",
    r"[A-Z][a-z ,]{2,12}\.",
    r"(?i)(yes|no)",
    r" ?hello world",
    r".{0,3}",
    "😀+( 🎉)?",  # emoji: four UTF-8 bytes, often split across tokens
    "[日本語]{1,4}",  # CJK: three bytes each
    "(café|naïve|über)( (café|naïve|über))*",  # accented letters: two bytes each
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_index_matches_brute_force(real_vocab, pattern):
    dfa = compile_regex(pattern)
    index = build_index(dfa, real_vocab)
    assert compare(index, dfa, real_vocab) == EXACT


def test_emoji_split_across_tokens_is_allowed_piece_by_piece(smollm2_tokenizer, smollm2_vocab):
    index = build_index(compile_regex("😀+"), smollm2_vocab)
    ids = smollm2_tokenizer.encode("😀😀", add_special_tokens=False)
    pieces = [smollm2_vocab.token_bytes[i] for i in ids]
    assert any(_invalid_utf8(p) for p in pieces), "SmolLM2 should split this emoji mid-character"
    s = index.start_state
    for t in ids:
        assert index.next_state(s, t) >= 0
        s = index.next_state(s, t)
    assert index.is_match(s)


def test_sentencepiece_leading_space(gemma_tokenizer, gemma_vocab):
    ids = gemma_tokenizer.encode(" hello world", add_special_tokens=False)
    assert gemma_tokenizer.convert_ids_to_tokens(ids)[0].startswith("\u2581")
    index = build_index(compile_regex(r" hello world"), gemma_vocab)
    s = index.start_state
    for t in ids:
        s = index.next_state(s, t)
        assert s >= 0
    assert index.is_match(s)
    # Without the space in the pattern, the space-led piece is denied.
    plain = build_index(compile_regex(r"hello world"), gemma_vocab)
    assert plain.next_state(plain.start_state, ids[0]) == -1


def test_byte_fallback_pieces_spell_raw_bytes(gemma_tokenizer, gemma_vocab):
    ids = gemma_tokenizer.convert_tokens_to_ids(["<0xC3>", "<0xA9>"])
    assert [gemma_vocab.token_bytes[i] for i in ids] == [b"\xc3", b"\xa9"]
    index = build_index(compile_regex("é"), gemma_vocab)
    s = index.next_state(index.start_state, ids[0])
    assert s >= 0 and index.next_state(s, ids[1]) >= 0
    assert index.is_match(index.next_state(s, ids[1]))


@pytest.mark.parametrize("pattern", [r"[a-z]{1,200}", r"\w+ \w+", r".{0,20}", r"(a|b)*a(a|b){5}"])
def test_no_special_id_is_ever_allowed(real_vocab, pattern):
    index = build_index(compile_regex(pattern), real_vocab)
    special = np.zeros(real_vocab.size, dtype=bool)
    special[real_vocab.special_ids] = True
    special[real_vocab.eos_ids] = False
    bitmask = index.bitmask.numpy()
    for s in range(index.num_states):
        row = unpack(bitmask[s], real_vocab.size)
        assert not (row & special).any()
        eos_row = row[real_vocab.eos_ids]
        assert eos_row.all() == index.is_match(s) and eos_row.any() == index.is_match(s)


def _invalid_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@pytest.mark.parametrize(
    "pattern", [r"[a-z]+@[a-z]+\.com", r".{0,3}", r"(a|b)*a(a|b){3}", "[日本語]{1,4}", r"\d{2}"]
)
def test_lazy_automaton_gives_the_eager_index(smollm2_vocab, pattern):
    """Every row built from the lazy automaton, explored to the end, equals the eager DFA's
    index state for state: same allowed tokens, next states, distances and matches."""
    from regexlm.automata import compile_lazy
    from regexlm.index.compiler import _index

    eager = build_index(compile_regex(pattern), smollm2_vocab)
    lazy = _index(compile_lazy(pattern), smollm2_vocab, "cpu", (pattern,), explore=None, full=True)
    assert lazy.exact and eager.exact
    pairs = {lazy.start_state: eager.start_state}
    todo = [lazy.start_state]
    visited = {lazy.start_state}
    while todo:
        a = todo.pop()
        b = pairs[a]
        tokens = lazy.allowed_tokens(a)
        assert torch.equal(tokens, eager.allowed_tokens(b))
        assert lazy.min_tokens_to_match(a) == eager.min_tokens_to_match(b)
        assert lazy.match_of(a) == eager.match_of(b)
        nxt_a = lazy.rows_of([a])[0, lazy.class_of.long()[tokens]].tolist()
        nxt_b = eager.rows_of([b])[0, eager.class_of.long()[tokens]].tolist()
        for x, y in zip(nxt_a, nxt_b, strict=True):
            assert pairs.setdefault(x, y) == y
            if x not in visited:
                visited.add(x)
                todo.append(x)
    assert len(pairs) == lazy.num_states == eager.num_states


@pytest.mark.parametrize(
    "packing", [{"MATMUL_MAX_CLASSES": 0}, {"MATMUL_MAX_CLASSES": 10**6}], ids=["fold", "matmul"]
)
def test_wide_bitmask_packings_agree(smollm2_vocab, monkeypatch, packing):
    from regexlm.index import bitmask

    dfa = compile_regex(r"[A-Z][a-z ,]{2,12}\.")
    reference = build_index(dfa, smollm2_vocab).bitmask
    for name, value in packing.items():
        monkeypatch.setattr(bitmask, name, value)
    assert torch.equal(build_index(dfa, smollm2_vocab).bitmask, reference)


@pytest.mark.parametrize("small_graph", [0, 10**9], ids=["arrays", "lists"])
@pytest.mark.parametrize("pattern", [r"[a-z]{1,12}@[a-z]+\.com", r"(ab|ba)*a(a|b){3}"])
def test_both_distance_searches_are_exact(smollm2_vocab, monkeypatch, small_graph, pattern):
    from regexlm.index import min_tokens

    monkeypatch.setattr(min_tokens, "SMALL_GRAPH", small_graph)
    dfa = compile_regex(pattern)
    assert compare(build_index(dfa, smollm2_vocab), dfa, smollm2_vocab) == EXACT
