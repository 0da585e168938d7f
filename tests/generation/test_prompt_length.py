"""A prompt that does not fit the model's context is refused up front, with a typed error."""

from __future__ import annotations

import pytest

from regexlm.errors import PromptTooLongError, RegexlmError


def test_prompt_beyond_the_context_is_refused(tiny_generator):
    context = tiny_generator.context_length
    assert context is not None
    prompt = " hello" * (context + 10)
    assert len(tiny_generator.encode_prompt(prompt)) > context
    with pytest.raises(PromptTooLongError, match=f"context of {context} tokens") as caught:
        tiny_generator.generate(prompt, "[a-z]+", max_new_tokens=3)
    # Callers that catch ValueError or the library's base error both see it.
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, RegexlmError)


def test_prompt_that_fits_only_without_the_budget_is_refused(tiny_generator):
    context = tiny_generator.context_length
    prompt_ids = tiny_generator.encode_prompt(" hello" * (context // 2))
    room = context - len(prompt_ids)
    assert room > 0
    prompt = " hello" * (context // 2)
    with pytest.raises(PromptTooLongError):
        tiny_generator.generate(prompt, "[a-z]+", max_new_tokens=room + 1)


def test_a_budget_no_prompt_fits_beside_is_named_as_the_cause(tiny_generator):
    context = tiny_generator.context_length
    with pytest.raises(PromptTooLongError, match=f"^max_new_tokens={context} does not fit") as e:
        tiny_generator.generate("hi", "[a-z]+", max_new_tokens=context)
    prompt_tokens = len(tiny_generator.encode_prompt("hi"))
    assert f"ask for at most {context - prompt_tokens} new tokens" in str(e.value)
