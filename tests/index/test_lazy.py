"""Rows on demand: patterns whose DFA is huge compile, stay exact, keep budgets, stay small.

The oracle here never touches regexlm's automaton: a token is allowed exactly when the text
with it is still a prefix of a match, as the ``regex`` package's partial matching decides, and
end-of-sequence exactly when ``re.fullmatch`` holds. Patterns keep to ASCII classes, where
``regex`` and ``re`` agree.
"""

from __future__ import annotations

import gc
import re
import time
import weakref

import numpy as np
import pytest
import regex
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regexlm
from regexlm.errors import PatternTooComplexError
from regexlm.index import token_index
from regexlm.index.token_index import initial_classes
from tests.index.walks import text_tokens

UNREACHABLE = 2**31 - 1

HEAVY = [
    r"[a-zA-Z0-9_]{1,50}",
    r"([a-zA-Z0-9_]+ ?){1,10}",
    r"[a-z0-9_]{1,40}@[a-z0-9_]{1,40}(\.[a-z]{2,6}){1,4}",
    r"\{\"name\": \"[a-zA-Z_]{1,30}\", \"age\": [0-9]{1,3}\}",
    r"(.|\n){0,500}",
    r"[0-9]{1,100}",
    r"(a|b)*a(a|b){12}",
]
UNICODE_HEAVY = [r"\w{1,50}", r"(\w+\s?){1,10}", r"\w{1,40}@\w{1,40}(\.\w{2,6}){1,4}", r".{0,500}"]


def _viable(pattern: str, text: str) -> bool:
    return regex.fullmatch(pattern, text, partial=True) is not None


def _valid(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _random_walk(index, vocab, *, seed: int, steps: int = 64) -> None:
    """Decode ``steps`` random text tokens from the start, building rows as a decoder does."""
    rng = np.random.default_rng(seed)
    state = index.start_state
    for _ in range(steps):
        index.ensure_rows([state])
        text = text_tokens(index, state, vocab.eos_ids)
        if text.size == 0:
            break
        state = index.next_state(state, int(rng.choice(text)))
        assert state >= 0


@pytest.mark.parametrize("pattern", HEAVY + UNICODE_HEAVY)
def test_heavy_patterns_compile_lazily_and_small(smollm2_vocab, pattern):
    index = regexlm.compile(pattern, smollm2_vocab, cache=False, mode="lazy")
    assert not index.exact
    _random_walk(index, smollm2_vocab, seed=0)
    # the bound: 4 bytes a token (class_of) plus a megabyte for everything else
    assert index.nbytes <= 4 * smollm2_vocab.size + (1 << 20), index.nbytes


def test_nfa_size_limit_is_still_a_named_refusal(smollm2_vocab):
    started = time.process_time()
    with pytest.raises(PatternTooComplexError, match="NFA states") as err:
        regexlm.compile(r"(x{1000}){1000}", smollm2_vocab, cache=False)
    assert err.value.limit == "max_nfa_states"
    assert time.process_time() - started < 2


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pattern=st.sampled_from(HEAVY),
    choices=st.lists(st.integers(min_value=0, max_value=2**31), min_size=1, max_size=4),
)
def test_lazy_masks_equal_the_text_oracle(smollm2_vocab, pattern, choices):
    """Every visited state's mask, over every token, against partial matching on the text."""
    vocab = smollm2_vocab
    index = regexlm.compile(pattern, vocab, cache=False, mode="lazy")
    eos = set(vocab.eos_ids)
    never = vocab.never_allowed()
    state, data = index.start_state, b""
    for pick in choices:
        got = np.zeros(vocab.size, dtype=bool)
        got[index.allowed_tokens(state).numpy()] = True
        text = _valid(data)
        for t in range(vocab.size):
            if t in eos:
                assert got[t] == (text is not None and re.fullmatch(pattern, text) is not None)
                continue
            if never[t]:
                assert not got[t]
                continue
            after = _valid(data + vocab.token_bytes[t])
            if after is not None:  # whole characters: the oracle decides exactly
                assert got[t] == _viable(pattern, after), (data, vocab.token_bytes[t])
            elif got[t]:  # a cut character: what comes before it must be viable
                head = data + vocab.token_bytes[t]
                for cut in range(len(head), len(head) - 4, -1):
                    if _valid(head[:cut]) is not None:
                        assert _viable(pattern, head[:cut].decode("utf-8"))
                        break
        choices_here = [t for t in np.flatnonzero(got).tolist() if t not in eos]
        if not choices_here:
            break
        token = choices_here[pick % len(choices_here)]
        data += vocab.token_bytes[token]
        state = index.next_state(state, token)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pattern=st.sampled_from(HEAVY + UNICODE_HEAVY),
    extra=st.integers(min_value=0, max_value=3),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_a_budget_that_fits_always_ends_in_a_match(smollm2_vocab, pattern, extra, seed):
    """The budget rule over the bounds: from the start with R >= min_tokens tokens, taking any
    token the rule keeps, a match is reached within R tokens."""
    index = regexlm.compile(pattern, smollm2_vocab, cache=False, mode="lazy")
    eos = np.asarray(smollm2_vocab.eos_ids)
    rng = np.random.default_rng(seed)
    state = index.start_state
    budget = index.min_tokens_to_match(state) + extra
    assert budget < UNREACHABLE
    while budget > 0 and not index.is_match(state):
        tokens = index.allowed_tokens(state).numpy()
        tokens = tokens[~np.isin(tokens, eos)]
        nexts = [index.next_state(state, int(t)) for t in tokens]
        keep = [
            t
            for t, n in zip(tokens, nexts, strict=True)
            if index.min_tokens_to_match(n) <= budget - 1
        ]
        assert keep, "the rule always leaves a token"
        state = index.next_state(state, int(rng.choice(keep)))
        budget -= 1
    assert index.is_match(state)


def test_a_tiny_automaton_cache_clears_and_stays_exact(smollm2_vocab):
    pattern = r"(a|b)*a(a|b){12}"
    small = regexlm.compile(pattern, smollm2_vocab, cache=False, mode="lazy", cache_bytes=1)
    big = regexlm.compile(pattern, smollm2_vocab, cache=False, mode="lazy")
    rng = np.random.default_rng(1)
    s, b = small.start_state, big.start_state
    for _ in range(40):
        assert np.array_equal(small.allowed_tokens(s).numpy(), big.allowed_tokens(b).numpy())
        assert small.min_tokens_to_match(s) == big.min_tokens_to_match(b)
        tokens = text_tokens(big, b, smollm2_vocab.eos_ids)
        t = int(rng.choice(tokens))
        s, b = small.next_state(s, t), big.next_state(b, t)
    assert small._rows.automaton.clears > 0


@pytest.mark.parametrize(
    "pattern", [r"\d{4}-\d{2}-\d{2}", r"\w{1,20}@[a-z]+\.(com|org)", r".{0,50}"]
)
def test_an_index_let_go_is_freed_at_once_with_its_automaton(smollm2_vocab, pattern):
    # no reference cycle holds an index, its rows or its automaton (whose state cache lives in
    # C): dropping the last reference frees them without waiting for the cyclic collector
    collecting = gc.isenabled()
    gc.disable()
    try:
        index = regexlm.compile(pattern, smollm2_vocab, cache=False)
        index.bitmask_rows([index.start_state])
        index.settle()
        state = index.start_state
        for _ in range(6):
            index.mask(state)
            tokens = text_tokens(index, state, smollm2_vocab.eos_ids)
            if tokens.size == 0:
                break
            state = index.next_state(state, int(tokens[-1]))
        held = [weakref.ref(index), weakref.ref(index._rows), weakref.ref(index._rows.automaton)]
        del index
        assert [ref() is None for ref in held] == [True, True, True]
    finally:
        if collecting:
            gc.enable()


def test_exploration_makes_small_patterns_exact(smollm2_vocab):
    index = regexlm.compile(r"[a-z]+@[a-z]+\.com", smollm2_vocab, cache=False, mode="auto")
    assert index.exact
    lazy = regexlm.compile(r"[a-z]+@[a-z]+\.com", smollm2_vocab, cache=False, mode="lazy")
    # a bound is never below the exact distance (the greedy descent may find an optimal path)
    assert index.min_tokens_to_match(index.start_state) <= lazy.min_tokens_to_match(
        lazy.start_state
    )
    assert lazy.min_tokens_to_match(lazy.start_state) < len("a@b.com")  # tighter than bytes


def test_a_pattern_whose_rows_need_too_much_is_refused_at_compile(smollm2_vocab):
    started = time.process_time()
    with pytest.raises(PatternTooComplexError, match="MB of DFA states|token rows") as err:
        regexlm.compile(r"(.{0,40}\w{0,40}){0,80}", smollm2_vocab, cache=False)
    assert err.value.limit in ("memory", "timeout")  # whichever the start row reaches first
    assert time.process_time() - started < 5


def test_a_row_past_the_time_limit_fails_and_keeps_failing(smollm2_vocab):
    index = regexlm.compile(r"\w{1,50}", smollm2_vocab, cache=False, mode="lazy")
    token = int(index.allowed_tokens(index.start_state)[-1])
    target = index.next_state(index.start_state, token)
    automaton = index._rows.automaton
    automaton.step_timeout = 0.0
    assert index.failure is None
    with pytest.raises(PatternTooComplexError, match="^building the token rows of one decoding"):
        index.ensure_rows([target])
    assert index.failure.limit == "timeout"
    automaton.step_timeout = 1.0
    with pytest.raises(PatternTooComplexError, match="^building the token rows") as err:
        index.ensure_rows([target])  # the answer for the pattern does not flip
    assert err.value.limit == "timeout"
    assert index.allowed_tokens(index.start_state).numel() > 0  # built rows still answer


def test_an_exploration_out_of_time_stops_and_keeps_sound_bounds(smollm2_vocab):
    pattern = r"[a-z]{2,8}@[a-z]{2,8}\.(com|org)"
    index = regexlm.compile(pattern, smollm2_vocab, cache=False)
    first = index.bitmask_rows([index.start_state])
    automaton = index._rows.automaton
    automaton.step_timeout = 0.0
    index.settle()
    assert index.settled and index._rows.exploration_cut and not index.exact
    automaton.step_timeout = 1.0
    assert torch.equal(index.bitmask_rows([index.start_state]), first)
    rng = np.random.default_rng(0)  # the budget rule holds on the bounds it kept
    for _ in range(20):
        state, text, budget = index.start_state, b"", index.min_tokens_to_match(0)
        while budget > 0 and not index.is_match(state):
            allowed = text_tokens(index, state, smollm2_vocab.eos_ids)
            ok = [
                t for t in allowed if index.min_tokens_to_match(index.next_state(state, t)) < budget
            ]
            token = int(rng.choice(ok))
            text += smollm2_vocab.token_bytes[token]
            state, budget = index.next_state(state, token), budget - 1
        assert re.fullmatch(pattern, text.decode()), text


def test_rows_that_are_each_slow_add_up_to_a_refusal(smollm2_vocab, monkeypatch):
    # every row of a real such pattern takes most of the per-call limit (hundreds of ms); here
    # any row counts as slow and the budget is small, so a few rows of a light pattern reach it
    monkeypatch.setattr(token_index, "SLOW_ROW_FRACTION", 0.0)
    monkeypatch.setattr(token_index, "SLOW_ROWS_BUDGET", 1e-9)
    index = regexlm.compile(r"\w{1,50}", smollm2_vocab, cache=False, mode="lazy")
    state, built = index.start_state, 0
    with pytest.raises(PatternTooComplexError, match="rows slower than 0 s each") as err:
        for token in index.allowed_tokens(index.start_state)[-8:].tolist():
            index.ensure_rows([index.next_state(state, token)])
            built += 1
    assert err.value.limit == "timeout" and str(index.failure) == str(err.value)
    assert built == 0  # the start row at compile already spent the budget: the next one fails


def test_a_large_nfa_is_held_once_in_c_and_within_the_bound(smollm2_vocab):
    # an 8-field JSON schema: 3,400 NFA states; once explored, C holds the whole NFA and
    # Python lets its copy go, so the index stays within the bound with room to spare
    from bench.index_patterns import JSON_SCHEMA_OBJECT

    index = regexlm.compile(JSON_SCHEMA_OBJECT, smollm2_vocab, cache=False)
    _random_walk(index, smollm2_vocab, seed=1)
    automaton = index._rows.automaton
    assert automaton._sc is None
    assert index.nbytes <= 4 * smollm2_vocab.size + (1 << 20), index.nbytes


@pytest.mark.parametrize("mode", ["auto", "lazy"])
def test_indexes_leave_the_initial_classes_they_share_as_they_were(smollm2_vocab, mode):
    shared = initial_classes(smollm2_vocab)
    class_of, size = shared.class_of.copy(), shared.size.copy()
    rng = np.random.default_rng(5)
    for pattern in [r"[0-9]{4}-[0-9]{2}", r"\w+( \w+){0,3}", r'\{"a": (true|false)\}', r".{0,20}"]:
        index = regexlm.compile(pattern, smollm2_vocab, cache=False, mode=mode)
        state = index.start_state
        for _ in range(12):
            tokens = text_tokens(index, state, smollm2_vocab.eos_ids)
            if tokens.size == 0:
                break
            state = index.next_state(state, int(rng.choice(tokens)))
    assert initial_classes(smollm2_vocab) is shared
    assert np.array_equal(shared.class_of, class_of) and np.array_equal(shared.size, size)
