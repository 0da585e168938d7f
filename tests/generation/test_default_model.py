"""End-to-end on the real default model (SmolLM2-135M-Instruct, CPU)."""

from __future__ import annotations

import datetime
import re

import pytest

from regexlm.generation import GenerationRequest
from tests.generation.oracles import check_completion

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_generator(default_model):
    from regexlm.generation import Generator

    model, tokenizer = default_model
    return Generator(model, tokenizer)


def test_seed_example_returns_a_valid_response(default_generator):
    request = GenerationRequest(
        "This is a sample prompt",
        ".*prompt$",
        max_new_tokens=10,
        stop_after_match=False,
        top_k=50,
        top_p=0.9,
        temperature=0.8,
        repetition_penalty=1.2,
        seed=0,
    )
    result = default_generator.generate_batch([request])[0]
    check_completion(result, request, default_generator.tokenizer, min_tokens=1)
    assert result.matched and result.completion.endswith("prompt")
    assert 1 <= result.tokens_generated <= 10
    assert result.stop_reason in ("pattern_match", "token_limit")


def test_date_prompt_gives_a_valid_date(default_generator):
    request = GenerationRequest(
        "The date today is ", r"\d{4}-\d{2}-\d{2}", max_new_tokens=12, seed=1
    )
    result = default_generator.generate_batch([request])[0]
    check_completion(result, request, default_generator.tokenizer, min_tokens=10)
    assert result.stop_reason == "pattern_match"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", result.completion)
    assert result.completion.isascii()  # SmolLM2 writes ASCII digits for a date
    # a real calendar date, greedy
    greedy = default_generator.generate(
        "Today's date (YYYY-MM-DD) is ", r"\d{4}-\d{2}-\d{2}", max_new_tokens=12, temperature=0
    )
    datetime.date.fromisoformat(greedy.completion)


def test_pattern_list_reports_the_matching_index(default_generator):
    patterns = [r" [0-9]+", r" (yes|no|Yes|No)", r" [A-Z][a-z]+"]
    cases = {
        "Two plus two equals": 0,
        "Question: Is water wet? Answer (yes or no):": 1,
        "The capital of France is": 2,
    }
    for prompt, expected in cases.items():
        result = default_generator.generate(prompt, patterns, temperature=0, max_new_tokens=5)
        assert result.matched and result.stop_reason == "pattern_match"
        oracle = next(i for i, p in enumerate(patterns) if re.fullmatch(p, result.completion))
        assert result.pattern_index == oracle == expected, (prompt, result)


def test_email_within_the_default_budget(default_generator):
    """The budget-aware headline: default max_new_tokens=5 still ends as a whole address."""
    for seed in range(3):
        result = default_generator.generate(
            "My email address is ", r"[a-z]+@[a-z]+\.com", seed=seed
        )
        assert result.tokens_generated <= 5
        assert re.fullmatch(r"[a-z]+@[a-z]+\.com", result.completion), result
        assert result.stop_reason == "pattern_match"


def test_batch_on_the_real_model(default_generator):
    requests = [
        GenerationRequest(
            "The date today is ", r"\d{4}-\d{2}-\d{2}", max_new_tokens=12, temperature=0
        ),
        GenerationRequest("My email address is ", r"[a-z]+@[a-z]+\.com", temperature=0),
        GenerationRequest("Answer yes or no: ", r"(yes|no)", temperature=0),
    ]
    together = default_generator.generate_batch(requests)
    for request, result in zip(requests, together, strict=True):
        check_completion(result, request, default_generator.tokenizer)
        assert result.matched
        alone = default_generator.generate_batch([request])[0]
        assert alone.token_ids == result.token_ids
