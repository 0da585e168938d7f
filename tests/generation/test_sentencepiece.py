"""Generation over a SentencePiece byte-fallback vocabulary (Gemma 3, 262,144 tokens).

The other generation tests run on SmolLM2's byte-level BPE. Here a tiny random Llama speaks
Gemma 3's vocabulary, whose pieces carry ``▁`` for spaces and ``<0xNN>`` pieces for raw bytes,
so multi-byte characters are often spelled byte by byte. Every rule must hold just the same.
"""

from __future__ import annotations

import re

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regexlm import GenerationRequest, Generator
from regexlm.models import build_tiny_llama

# Patterns whose classes mean the same to `re` and to `regex` (the partial-match oracle), with
# a short shortest match so that a budget of 8 tokens always fits one.
PATTERNS = [
    r"(yes|no)",
    r" [A-Z][a-z]+",
    r"[a-z]+@[a-z]+\.com",
    r"日本語?",
    r"[😀-😂]{1,2}",
    r"(?i)hello",
    r"[^\n]{1,10}",
    r"(é|ß|ü)+!",
    r"[0-9]{2}:[0-9]{2}",
]


@pytest.fixture(scope="module")
def gemma_generator():
    from tests.index.gemma_tokenizer import load_gemma_tokenizer

    tokenizer = load_gemma_tokenizer()
    return Generator(build_tiny_llama(tokenizer, seed=3), tokenizer)


def _check_rules(generator, request, completion):
    tokenizer = generator.tokenizer
    pattern = request.pattern
    assert completion.tokens_generated == len(completion.token_ids) <= request.max_new_tokens
    assert tokenizer.decode(completion.token_ids) == completion.completion
    special = set(tokenizer.all_special_ids)
    assert not special.intersection(completion.token_ids)
    # Every prefix of whole tokens is still viable.
    for end in range(1, len(completion.token_ids) + 1):
        prefix = tokenizer.decode(completion.token_ids[:end])
        if "\ufffd" in prefix:  # a character still being spelled byte by byte
            continue
        assert regex.fullmatch(pattern, prefix, partial=True), (pattern, prefix)
    matched = re.fullmatch(pattern, completion.completion) is not None
    assert completion.matched == matched
    if completion.stop_reason == "pattern_match":
        assert matched
    if request.stop_after_match and matched:
        assert completion.stop_reason == "pattern_match"


@pytest.mark.parametrize("pattern", PATTERNS)
def test_greedy_completion_matches(gemma_generator, pattern):
    request = GenerationRequest("Answer: ", pattern, max_new_tokens=8, temperature=0.0)
    completion = gemma_generator.generate_batch([request])[0]
    _check_rules(gemma_generator, request, completion)
    assert completion.matched, (pattern, completion)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    patterns=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=4),
    seed=st.integers(0, 2**31),
    temperature=st.sampled_from([0.0, 0.7, 1.0, 1.5]),
    top_k=st.sampled_from([0, 1, 50]),
    top_p=st.sampled_from([0.3, 1.0]),
    stop_after_match=st.booleans(),
    max_new_tokens=st.integers(8, 16),
)
def test_sampled_batches_keep_every_rule(
    gemma_generator, patterns, seed, temperature, top_k, top_p, stop_after_match, max_new_tokens
):
    requests = [
        GenerationRequest(
            "Prompt: ",
            pattern,
            max_new_tokens=max_new_tokens,
            seed=seed + row,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop_after_match=stop_after_match,
        )
        for row, pattern in enumerate(patterns)
    ]
    for request, completion in zip(requests, gemma_generator.generate_batch(requests), strict=True):
        _check_rules(gemma_generator, request, completion)
        # The shortest match of every pattern here fits in 8 tokens: budget-aware decoding
        # must end on a match.
        assert completion.matched, (request.pattern, completion)
