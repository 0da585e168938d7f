"""``VllmModel.generate``: a request's vLLM tokens walked through its pattern, with the decode
loop's stop rules, over a scripted stand-in for vLLM's ``AsyncLLM`` (the real one is exercised
in test_servers.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from regexlm.errors import PromptTooLongError
from regexlm.generation import GenerationRequest
from regexlm.vllm.engine import VllmModel

EOS = 2


class ScriptedLLM:
    """Streams the scripted token ids one per output, as vLLM's DELTA outputs do."""

    def __init__(self, tokens: list[int]):
        self.tokens = tokens
        self.consumed = 0
        self.closed = False
        self.calls = []

    def generate(self, prompt, params, request_id):
        self.calls.append((prompt, params, request_id))

        async def stream():
            try:
                for token in self.tokens:
                    self.consumed += 1
                    yield SimpleNamespace(outputs=[SimpleNamespace(token_ids=[token])])
            finally:
                self.closed = True

        return stream()


@pytest.fixture(scope="module")
def vocabulary(smollm2_tokenizer):
    from regexlm.index import Vocabulary

    return Vocabulary.from_tokenizer(smollm2_tokenizer, vocab_size=49152)


@pytest.fixture
def model(smollm2_tokenizer, vocabulary):
    return VllmModel(
        None, SimpleNamespace(max_model_len=64), smollm2_tokenizer, vocabulary, name="test"
    )


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def run(model, request, tokens):
    model.llm = ScriptedLLM(tokens)
    seen = []
    completion = asyncio.run(
        model.generate(request, on_token=lambda token, text: seen.append((token, text)))
    )
    return completion, seen


def test_stop_after_match_answers_at_the_first_match_and_aborts(model, smollm2_tokenizer):
    date = ids(smollm2_tokenizer, "2024-05-17")
    request = GenerationRequest("Date: ", r"\d{4}-\d{2}-\d{2}", max_new_tokens=12)
    completion, seen = run(model, request, [*date, EOS, 33, 33])
    assert completion.completion == "2024-05-17" and completion.stop_reason == "pattern_match"
    assert completion.matched and completion.pattern_index == 0
    assert completion.tokens_generated == len(date) == len(completion.token_ids)
    assert model.llm.consumed == len(date) and model.llm.closed  # not read past the match
    assert "".join(text for _, text in seen) == "2024-05-17"
    params = model.llm.calls[0][1]
    assert params.extra_args == {"regex": r"\d{4}-\d{2}-\d{2}", "stop_after_match": True}
    assert params.max_tokens == 12 and params.top_k == 50 and params.temperature == 1.0


def test_without_stop_after_match_eos_or_the_budget_ends_it(model, smollm2_tokenizer):
    digits = ids(smollm2_tokenizer, "123")
    request = GenerationRequest("N: ", r"\d+", max_new_tokens=8, stop_after_match=False)
    completion, _ = run(model, request, [*digits, EOS])
    assert completion.completion == "123" and completion.stop_reason == "pattern_match"
    request = GenerationRequest("N: ", r"\d+", max_new_tokens=len(digits), stop_after_match=False)
    completion, _ = run(model, request, [*digits, *digits])
    assert completion.stop_reason == "token_limit" and completion.matched
    assert completion.tokens_generated == len(digits)


def test_a_dead_end_match_ends_without_waiting_for_eos(model, smollm2_tokenizer):
    no = ids(smollm2_tokenizer, "no")
    request = GenerationRequest("?", ["yes", "no"], max_new_tokens=8, stop_after_match=False)
    completion, _ = run(model, request, [*no, EOS])
    assert completion.completion == "no" and completion.pattern_index == 1
    assert completion.stop_reason == "pattern_match" and model.llm.consumed == len(no)


def test_a_character_split_across_tokens_streams_whole(model, vocabulary):
    by_bytes = {b: i for i, b in enumerate(vocabulary.token_bytes) if len(b) == 1}
    alpha = "α".encode()
    tokens = [by_bytes[alpha[:1]], by_bytes[alpha[1:]]]
    request = GenerationRequest("?", "[αβγ]+", max_new_tokens=2, stop_after_match=False)
    completion, seen = run(model, request, tokens)
    assert [text for _, text in seen] == ["", "α"] and completion.completion == "α"


def test_a_token_the_pattern_forbids_is_a_failure_not_an_answer(model, smollm2_tokenizer):
    request = GenerationRequest("Date: ", r"\d{4}", max_new_tokens=4)
    with pytest.raises(RuntimeError, match="does not allow"):
        run(model, request, ids(smollm2_tokenizer, "ab"))
    with pytest.raises(RuntimeError, match="non-matching"):
        run(model, request, [*ids(smollm2_tokenizer, "1"), EOS])


def test_a_prompt_too_long_for_the_context_is_refused(model):
    request = GenerationRequest("word " * 80, "a", max_new_tokens=8)
    with pytest.raises(PromptTooLongError, match="exceed the model's context of 64"):
        run(model, request, [])


def test_sampling_parameters_map_to_vllms(model):
    request = GenerationRequest(
        "p",
        "a+",
        max_new_tokens=7,
        temperature=0.7,
        top_k=0,
        top_p=0.5,
        repetition_penalty=1.3,
        seed=11,
        stop_after_match=False,
    )
    params = model.sampling_params(request)
    assert (params.max_tokens, params.temperature, params.top_k, params.top_p) == (7, 0.7, 0, 0.5)
    assert params.repetition_penalty == 1.3 and params.seed == 11
    assert params.extra_args == {"regex": "a+", "stop_after_match": False}
    # top_p=0 keeps only the most likely token(s); vLLM wants 0 < top_p, so it is top_k=1
    params = model.sampling_params(GenerationRequest("p", "a+", temperature=0.7, top_p=0.0))
    assert (params.top_k, params.top_p) == (1, 1.0)


def test_prepare_makes_what_the_fronts_patterns_share(model, vocabulary, prepared):
    assert model.prepare() is model and prepared == [vocabulary]
