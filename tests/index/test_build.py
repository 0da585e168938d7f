"""The index build on hand-made vocabularies, where every transition is known in advance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regexlm.errors import EmptyLanguageError
from regexlm.index import Vocabulary, build_index
from tests.index.oracle import compare, unpack
from tests.index.tiny_dfa import tiny_dfa

EOS = 0
PAD = 1


def make_vocab(pieces: list[bytes], *, eos=(EOS,), specials=(PAD,), size=None) -> Vocabulary:
    """Ids 0 and 1 are EOS and padding; the pieces follow from id 2."""
    return Vocabulary([b"<eos>", b"<pad>", *pieces], eos_ids=eos, special_ids=specials, size=size)


def allowed(index, state) -> set[int]:
    return set(np.nonzero(unpack(index.bitmask[state], index.vocab_size))[0].tolist())


def walk(index, tokens: list[int]) -> int:
    s = index.start_state
    for t in tokens:
        s = index.next_state(s, t)
        assert s >= 0, f"token {t} not allowed"
    return s


def test_literal_with_exact_transitions():
    #                   2     3      4      5     6     7
    vocab = make_vocab([b"a", b"b", b"ab", b"ba", b"c", b"abc"])
    index = build_index(tiny_dfa("abc"), vocab)
    s0 = index.start_state
    # "b", "ba", "c" cannot start "abc"; "a", "ab", "abc" can.
    assert allowed(index, s0) == {2, 4, 7}
    s_a, s_ab, s_abc = index.next_state(s0, 2), index.next_state(s0, 4), index.next_state(s0, 7)
    assert allowed(index, s_a) == {3}  # only "b"; "bc" is not a token
    assert index.next_state(s_a, 3) == s_ab
    assert allowed(index, s_ab) == {6}
    assert index.next_state(s_ab, 6) == s_abc
    assert allowed(index, s_abc) == {EOS}
    assert index.next_state(s_abc, EOS) == s_abc
    assert index.next_state(s0, EOS) == -1
    assert [index.min_tokens_to_match(s) for s in (s0, s_a, s_ab, s_abc)] == [1, 2, 1, 0]
    assert index.info["exact"] and index.settled  # a complete index has nothing left to explore
    assert index.is_match(s_abc) and not index.is_match(s0)
    assert index.num_states == 4


def test_token_classes_group_tokens_with_equal_columns():
    from regexlm.automata import compile_regex  # minimized: equal futures are one state

    vocab = make_vocab([b"1", b"2", b"3", b"12", b"x", b"-"])
    index = build_index(compile_regex(r"[0-9]+(-[0-9]+)?"), vocab)
    cls = index.class_of.tolist()
    assert cls[2] == cls[3] == cls[4] == cls[5]  # every digit run behaves alike
    assert cls[6] == cls[PAD] == 0  # "x" never fits; padding never allowed
    assert cls[7] not in (0, cls[2])
    assert cls[EOS] not in (0, cls[2], cls[7])
    assert index.num_classes == 4


def test_dead_end_states_are_pruned():
    # Bytes reach "a" then "ab", but no token is "b": only the token "ab" works, and "a"
    # alone would be a dead end.
    vocab = make_vocab([b"a", b"ab", b"c"])
    index = build_index(tiny_dfa("abc"), vocab)
    assert allowed(index, index.start_state) == {3}
    assert index.num_states == 3  # start, after "ab", after "abc"
    assert walk(index, [3, 4]) >= 0
    assert index.min_tokens_to_match(index.start_state) == 2


def test_states_that_tokens_cannot_complete_are_pruned_even_when_reachable():
    # From the start, "aa" leads into a state where only "b" completes; there is no "b"
    # token, so "aa" must be denied even though bytes could finish the match.
    vocab = make_vocab([b"a", b"aa", b"ab"])
    index = build_index(tiny_dfa("a(ab|b)"), vocab)
    # "a" (then "ab") and "ab" (a match) are fine; "aa" needs a "b" token next.
    assert allowed(index, index.start_state) == {2, 4}
    assert compare(index, tiny_dfa("a(ab|b)"), vocab) == dict.fromkeys(
        ["false_allow", "false_deny", "wrong_next", "eos", "min_tokens", "states"], 0
    )


def test_empty_language_with_these_tokens_raises():
    vocab = make_vocab([b"a", b"c"])
    with pytest.raises(EmptyLanguageError, match="no text made of the model's tokens"):
        build_index(tiny_dfa("ab"), vocab)


def test_empty_pattern_allows_only_eos():
    vocab = make_vocab([b"a"])
    index = build_index(tiny_dfa(""), vocab)
    assert index.num_states == 1
    assert allowed(index, index.start_state) == {EOS}
    assert index.min_tokens_to_match(index.start_state) == 0


def test_several_eos_ids_are_allowed_exactly_at_matches_and_keep_the_state():
    vocab = Vocabulary([b"<eos>", b"<end_of_turn>", b"a", b"b"], eos_ids=[0, 1])
    index = build_index(tiny_dfa("a+b?"), vocab)
    s0 = index.start_state
    assert allowed(index, s0) == {2}
    s1 = index.next_state(s0, 2)
    assert allowed(index, s1) == {0, 1, 2, 3}
    assert index.next_state(s1, 0) == index.next_state(s1, 1) == s1
    s2 = index.next_state(s1, 3)
    assert allowed(index, s2) == {0, 1}


def test_special_and_empty_tokens_are_never_allowed():
    # id 4 spells "a" but is special (a chat marker drawn as text); id 5 has no bytes.
    vocab = Vocabulary([b"<eos>", b"a", b"b", b"", b"a"], eos_ids=[0], special_ids=[4], size=9)
    index = build_index(tiny_dfa("[ab]*"), vocab)
    assert index.vocab_size == 9
    for s in range(index.num_states):
        got = allowed(index, s)
        assert got == {0, 1, 2}
        assert index.next_state(s, 4) == -1 and index.next_state(s, 3) == -1
        assert all(index.next_state(s, t) == -1 for t in range(5, 9))


def test_multiple_patterns_report_the_lowest_matching_index():
    vocab = make_vocab([b"a", b"b", b"ab"])
    index = build_index(tiny_dfa(["ab", "a+b?", "b"]), vocab)
    assert index.match_index[walk(index, [4])].item() == 0
    assert index.match_index[walk(index, [2])].item() == 1
    assert index.match_index[walk(index, [3])].item() == 2
    assert index.match_index[index.start_state].item() == -1


def test_partial_utf8_tokens_complete_a_character():
    # "é" is C3 A9; tokens may hold either half, or both.
    vocab = make_vocab([b"\xc3", b"\xa9", b"\xc3\xa9", b"x\xc3", b"x"])
    dfa = tiny_dfa(b"x?(\xc3\xa9)+")
    index = build_index(dfa, vocab)
    s0 = index.start_state
    assert allowed(index, s0) == {2, 4, 5, 6}
    mid = index.next_state(s0, 2)
    assert allowed(index, mid) == {3}  # only the second half can follow the first
    assert index.min_tokens_to_match(mid) == 1
    assert index.next_state(mid, 3) == index.next_state(s0, 4)
    assert compare(index, dfa, vocab)["false_allow"] == 0


@pytest.mark.parametrize(
    "pattern",
    ["abc", r"\d+(-\d+)?", "a(ab|b)", "(ab|cd)*e", "[a-c]{2,5}", "x?a*b*", r"(aa|b)+c?", ".{0,3}"],
)
def test_small_vocabularies_match_the_brute_force_oracle(pattern):
    pieces = [bytes([c]) for c in b"abcdex-019\n"] + [
        b"ab",
        b"abc",
        b"cd",
        b"aab",
        b"ba",
        b"de",
        b"12",
        b"-1",
        b"e\n",
        b"bb",
    ]
    vocab = make_vocab(pieces, size=40)
    dfa = tiny_dfa(pattern)
    index = build_index(dfa, vocab)
    assert compare(index, dfa, vocab) == dict.fromkeys(
        ["false_allow", "false_deny", "wrong_next", "eos", "min_tokens", "states"], 0
    )


def test_oracle_comparison_detects_a_wrong_bit():
    """The exactness check itself can fail: flip one allowed bit and it reports it."""
    vocab = make_vocab([b"a", b"b"])
    dfa = tiny_dfa("ab")
    index = build_index(dfa, vocab)
    index.bitmask[index.start_state, 0] ^= 1 << 3  # allow "b" at the start
    assert compare(index, dfa, vocab)["false_allow"] == 1


def test_distinct_rows_on_the_cpu_match_torch_unique():
    """The numpy row dedupe finds torch.unique(dim=0)'s rows, and every state maps to its own."""
    from regexlm.index.bitmask import _distinct_rows

    gen = torch.Generator().manual_seed(7)
    for num_states, num_classes in [(1, 1), (70, 3), (200, 9), (300, 70)]:
        base = torch.rand(num_states // 3 + 1, num_classes, generator=gen) < 0.4
        pick = torch.randint(0, base.shape[0], (num_states,), generator=gen)
        flags = base[pick]
        rows, row_of_state = _distinct_rows(flags)
        assert torch.equal(rows[row_of_state], flags)
        want = torch.unique(flags.to(torch.uint8), dim=0)
        assert {tuple(r) for r in rows.to(torch.uint8).tolist()} == {
            tuple(r) for r in want.tolist()
        }
        assert rows.shape[0] == want.shape[0]


def test_deduplicated_bitmask_equals_the_plain_one(monkeypatch):
    from regexlm.index import bitmask

    vocab = make_vocab([bytes([c]) for c in b"abcdex-019"] + [b"ab", b"abc", b"-12"])
    dfa = tiny_dfa("[a-c]{2,5}(-[0-9]+)?")
    monkeypatch.setattr(bitmask, "DEDUPE_FROM", 1)
    deduped = build_index(dfa, vocab).bitmask
    monkeypatch.setattr(bitmask, "DEDUPE_FROM", 10**9)
    assert torch.equal(deduped, build_index(dfa, vocab).bitmask)
