"""Batching: padding is invisible, seeds reproduce, rows leave the batch when they finish,
and the streaming hooks see exactly the completion."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regexlm.generation import GenerationRequest
from tests.generation.conftest import REALISTIC

SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
PROMPTS = [
    "",
    "a",
    "The date today is ",
    "A much longer prompt, with several words in it: ",
    "日本語のテキスト",
    "Contact me at ",
    "word " * 150,
]  # 1 to 150 tokens
patterns = st.sampled_from([p for p, _ in REALISTIC])


def _request(prompt, pattern, **params):
    return GenerationRequest(prompt, pattern, **params)


@settings(max_examples=40, **SETTINGS)
@given(
    prompt=st.sampled_from(PROMPTS),
    pattern=patterns,
    others=st.lists(st.tuples(st.sampled_from(PROMPTS), patterns), min_size=1, max_size=5),
    position=st.integers(0, 5),
    max_new_tokens=st.integers(1, 16),
    stop_after_match=st.booleans(),
)
def test_greedy_alone_equals_in_batch(
    tiny_generator, prompt, pattern, others, position, max_new_tokens, stop_after_match
):
    target = _request(
        prompt,
        pattern,
        temperature=0.0,
        max_new_tokens=max_new_tokens,
        stop_after_match=stop_after_match,
        repetition_penalty=1.2,
    )
    alone = tiny_generator.generate_batch([target])[0]
    batch = [
        _request(p, q, temperature=0.7, max_new_tokens=1 + i % 9) for i, (p, q) in enumerate(others)
    ]
    position = min(position, len(batch))
    batch.insert(position, target)
    together = tiny_generator.generate_batch(batch)[position]
    assert together.token_ids == alone.token_ids
    assert together.completion == alone.completion
    assert together.stop_reason == alone.stop_reason


@settings(max_examples=25, **SETTINGS)
@given(
    prompt=st.sampled_from(PROMPTS),
    pattern=patterns,
    seed=st.integers(0, 2**32),
    temperature=st.floats(0.3, 3.0),
    top_p=st.floats(0.2, 1.0),
)
def test_seed_reproduces_alone_and_in_batch(
    tiny_generator, prompt, pattern, seed, temperature, top_p
):
    request = _request(
        prompt,
        pattern,
        seed=seed,
        temperature=temperature,
        top_p=top_p,
        top_k=0,
        max_new_tokens=12,
        stop_after_match=False,
    )
    first = tiny_generator.generate_batch([request])[0]
    second = tiny_generator.generate_batch([request])[0]
    assert first.token_ids == second.token_ids
    noise = _request("other", r"[a-z ]+", temperature=1.0, max_new_tokens=7)
    in_batch = tiny_generator.generate_batch([noise, request, noise])[1]
    assert in_batch.token_ids == first.token_ids


def test_different_seeds_give_different_samples(tiny_generator):
    # A wide-open pattern with a flat temperature: 8 seeds drawing the same 12 tokens would mean
    # the seed is ignored.
    outs = {
        tuple(
            tiny_generator.generate(
                "x", r"[a-z]{12}", seed=s, temperature=30.0, top_k=0, max_new_tokens=12
            ).token_ids
        )
        for s in range(8)
    }
    assert len(outs) > 4


def test_unseeded_sampling_varies(tiny_generator):
    outs = {
        tiny_generator.generate(
            "x", r"[a-z]{12}", temperature=30.0, top_k=0, max_new_tokens=12
        ).completion
        for _ in range(6)
    }
    assert len(outs) > 1


def test_finished_rows_leave_the_batch(tiny_generator):
    """Decoding cost follows live rows: forward passes shrink as rows end."""
    rows_per_forward = []
    handle = tiny_generator.model.register_forward_pre_hook(
        lambda module, args, kwargs: rows_per_forward.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    try:
        results = tiny_generator.generate_batch(
            [
                _request("a", r"(yes|no)", temperature=0, max_new_tokens=10),
                _request(
                    "b", r"[a-z]{4}", temperature=0, max_new_tokens=10, stop_after_match=False
                ),
                _request("c", r"[0-9]{9}", temperature=0, max_new_tokens=12),
            ]
        )
    finally:
        handle.remove()
    lengths = sorted(r.tokens_generated for r in results)
    assert lengths[0] < lengths[-1]
    # one prefill with all rows, then one forward per step with only the live rows
    assert rows_per_forward[0] == 3
    live = [sum(1 for r in results if r.tokens_generated > step) for step in range(1, 13)]
    assert rows_per_forward[1:] == [n for n in live if n > 0][: len(rows_per_forward) - 1]
    assert rows_per_forward[-1] == 1


@settings(max_examples=30, **SETTINGS)
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from(PROMPTS),
            patterns,
            st.integers(1, 20),
            st.booleans(),
            st.sampled_from([0.0, 1.0, 2.0]),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_streamed_deltas_concatenate_to_the_completion(tiny_generator, requests):
    batch = [
        _request(p, q, max_new_tokens=n, stop_after_match=s, temperature=t, top_k=0)
        for p, q, n, s, t in requests
    ]
    streamed: dict[int, list] = {i: [] for i in range(len(batch))}
    results = tiny_generator.generate_batch(
        batch, on_token=lambda row, token, delta: streamed[row].append((token, delta))
    )
    for i, result in enumerate(results):
        assert [token for token, _ in streamed[i]] == result.token_ids
        assert "".join(delta for _, delta in streamed[i]) == result.completion


def test_delta_holds_back_half_characters(tiny_generator):
    # Emoji are 4 UTF-8 bytes, which SmolLM2 often spells as two or more tokens.
    deltas = []
    result = tiny_generator.generate_batch(
        [_request("", r"[😀-😎]{3}", temperature=0, max_new_tokens=12)],
        on_token=lambda row, token, delta: deltas.append(delta),
    )[0]
    assert result.matched and len(result.completion) == 3
    assert len(deltas) == result.tokens_generated > 3
    assert "" in deltas  # some token ended inside a character
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == result.completion


def test_should_stop_drops_a_row_early(tiny_generator):
    steps = {0: 0, 1: 0}

    def should_stop(row):
        steps[row] += 1
        return row == 0 and steps[row] > 3

    results = tiny_generator.generate_batch(
        [
            _request("a", r"[a-z]{20}", temperature=0, max_new_tokens=20),
            _request("b", r"[a-z]{20}", temperature=0, max_new_tokens=20),
        ],
        should_stop=should_stop,
    )
    assert results[0].tokens_generated == 3
    assert results[0].stop_reason == "token_limit" and not results[0].matched
    assert results[1].matched and results[1].stop_reason == "pattern_match"
    # the stopped row's text is what it had when it was dropped
    assert results[0].completion == tiny_generator.tokenizer.decode(results[0].token_ids)


def test_empty_batch(tiny_generator):
    assert tiny_generator.generate_batch([]) == []


def test_timings_are_reported(tiny_generator):
    result = tiny_generator.generate(
        "t", r"never seen before [0-9]", temperature=0, max_new_tokens=8
    )
    assert set(result.timings) == {"compile_s", "prefill_s", "decode_s"}
    assert result.timings["compile_s"] > 0  # compiled for this request
    again = tiny_generator.generate(
        "t", r"never seen before [0-9]", temperature=0, max_new_tokens=8
    )
    assert again.timings["compile_s"] == 0.0  # cached
    assert again.timings["prefill_s"] > 0 and again.timings["decode_s"] > 0


def test_max_cached_patterns_warns_that_the_cache_is_bounded_by_bytes(tiny_model):
    from regexlm.generation import Generator

    model, tokenizer = tiny_model
    with pytest.warns(DeprecationWarning, match="cache_bytes"):
        generator = Generator(model, tokenizer, max_cached_patterns=3)
    assert generator.generate("x", "[a-z]{2}", temperature=0, max_new_tokens=4).matched


def test_compile_from_other_threads_while_decoding(tiny_model):
    """A server compiles in a pool while one thread decodes; the pattern cache stays sound."""
    import threading

    from regexlm.generation import Generator

    model, tokenizer = tiny_model
    generator = Generator(model, tokenizer)
    patterns = [f"[a-z]{{{n}}}" for n in range(1, 9)]
    errors = []

    def compile_all():
        try:
            for pattern in patterns:
                index = generator.compile(pattern)
                assert index.num_states > 0
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=compile_all) for _ in range(3)]
    for thread in threads:
        thread.start()
    results = [generator.generate("x", p, temperature=0, max_new_tokens=10) for p in patterns]
    for thread in threads:
        thread.join()
    assert not errors
    assert all(r.matched for r in results)
    from regexlm.index import cache

    assert cache.memory_bytes() <= cache.MEMORY_BYTES


def test_a_row_with_no_allowed_token_ends_without_garbage(tiny_generator, monkeypatch, caplog):
    """Should a step ever find no allowed token at a non-matching state, the row ends as
    token_limit with what it had, and a warning is logged."""
    import torch

    import regexlm.ops as ops

    real = ops.sample_step
    calls = []

    def stuck_on_third_step(logits, states, *args, **kwargs):
        result = real(logits, states, *args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            return type(result)(
                torch.full_like(result.tokens, -1),
                states.clone(),
                torch.ones_like(result.no_allowed),
            )
        return result

    monkeypatch.setattr(ops, "sample_step", stuck_on_third_step)
    with caplog.at_level("WARNING", logger="regexlm.generation"):
        result = tiny_generator.generate("x", r"[0-9]{10}", temperature=0, max_new_tokens=12)
    assert result.tokens_generated == 2 and -1 not in result.token_ids
    assert result.stop_reason == "token_limit" and not result.matched
    assert result.completion == tiny_generator.tokenizer.decode(result.token_ids)
    assert "no token is allowed" in caplog.text
