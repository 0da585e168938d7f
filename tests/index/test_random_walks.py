"""Random walks over allowed tokens stay viable, and EOS appears exactly on full matches.

The oracles are independent of the automata layer: the ``regex`` package's partial match says
whether a text can still be extended to a match, and ``re.fullmatch`` whether it matches. The
patterns keep to constructs where ``regex`` and ``re`` agree (ASCII classes, literals, plain
Unicode literals), so the two oracles describe the same language.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regexlm
from tests.index.oracle import unpack

UNREACHABLE = 2**31 - 1

PATTERNS = [
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
    r"[a-z]+@[a-z]+\.(com|org)",
    r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?",
    r"\{\"name\": \"[a-zA-Z ]{1,20}\", \"age\": [0-9]{1,3}\}",
    r"[A-Z][a-z ,]{5,40}\.",
    r"(red|green|blue)( and (red|green|blue)){0,3}",
    r"(ab|ba)*a(a|b){3}",
    "(日本|中文|😀)+ ?(café|über)?",
]


def _viable(pattern: str, text: str) -> bool:
    return regex.fullmatch(pattern, text, partial=True) is not None


@pytest.fixture(scope="module")
def indexes(smollm2_vocab, gemma_vocab):
    out = {}
    for name, vocab in (("smollm2", smollm2_vocab), ("gemma", gemma_vocab)):
        for p in PATTERNS:
            for mode in MODES:
                index = regexlm.compile(p, vocab, cache=False, timeout=60, mode=mode)
                out[name, p, mode] = (index, vocab)
    return out


MODES = ("auto", "lazy")  # rows built at compile time when few; rows on demand only


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    which=st.sampled_from(["smollm2", "gemma"]),
    pattern=st.sampled_from(PATTERNS),
    mode=st.sampled_from(MODES),
    choices=st.lists(st.integers(min_value=0, max_value=2**31), min_size=1, max_size=30),
)
def test_random_allowed_tokens_keep_the_text_viable(indexes, which, pattern, mode, choices):
    index, vocab = indexes[which, pattern, mode]
    eos = set(vocab.eos_ids)
    state, data = index.start_state, b""
    for pick in choices:
        allowed = np.nonzero(unpack(index.bitmask_rows([state])[0], vocab.size))[0]
        assert allowed.size > 0, "no dead ends: some token is always allowed"
        complete = data.decode("utf-8", errors="strict") if _valid(data) else None
        allowed_eos = eos.intersection(allowed.tolist())
        if complete is not None and re.fullmatch(pattern, complete):
            assert allowed_eos == eos and index.is_match(state)
        else:
            assert not allowed_eos and not index.is_match(state)
        text_tokens = [t for t in allowed.tolist() if t not in eos]
        if not text_tokens:
            break
        # Exact min_tokens is a shortest distance: no token shortens it by more than one, and
        # (away from a match) some token shortens it by exactly one. A bound keeps the second
        # half: some token shortens it by at least one, so a budget can always be kept.
        nexts = index.rows_of([state])[0, index.class_of[text_tokens]].long()
        dists = index.min_tokens[nexts]
        here = index.min_tokens_to_match(state)
        if index.exact:
            assert int(dists.min()) >= here - 1
        if 0 < here < UNREACHABLE:
            assert int(dists.min()) <= here - 1
            assert not index.exact or int(dists.min()) == here - 1
        token = text_tokens[pick % len(text_tokens)]
        nxt = index.next_state(state, token)
        assert nxt >= 0
        data += vocab.token_bytes[token]
        state = nxt
        # The new text is a prefix of a match (a cut UTF-8 character is checked when whole).
        if _valid(data):
            assert _viable(pattern, data.decode("utf-8")), data
        else:
            head = _longest_valid_prefix(data)
            assert _viable(pattern, head.decode("utf-8")), data


def _valid(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _longest_valid_prefix(data: bytes) -> bytes:
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        if _valid(data[:cut]):
            return data[:cut]
    raise AssertionError(f"not UTF-8 beyond a cut character: {data!r}")
