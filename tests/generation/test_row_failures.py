"""One failing row never costs its batch: ``generate_batch(..., return_exceptions=True)``.

A bad field, a bad pattern, a prompt that does not fit, a tokenizer failing on one prompt and a
callback failing for one row each come back in that row's place; the other rows decode together
in one batch and give exactly the tokens they give without the failing row beside them. Indexes
compiled beforehand (``indexes=``) are used as they are: decoding never compiles, even when the
pattern cache has dropped them.
"""

from __future__ import annotations

import re
import threading

import pytest

from regexlm.errors import PromptTooLongError, RegexError
from regexlm.generation import GenerationRequest, Generator, decode_loop
from regexlm.generation.request import FieldError

GOOD = [
    GenerationRequest("The year is ", r"(19|20)\d{2}", max_new_tokens=8, temperature=0),
    GenerationRequest("Mail: ", r"[a-z]+@[a-z]+\.com", max_new_tokens=10, seed=4),
    GenerationRequest("Pick: ", ["yes", "no"], max_new_tokens=4, temperature=0.7, seed=1),
]


@pytest.fixture
def batches(monkeypatch):
    """The number of rows of each decoded batch."""
    sizes = []
    real = decode_loop.run_batch

    def counting(model, specs, **kwargs):
        sizes.append(len(specs))
        return real(model, specs, **kwargs)

    monkeypatch.setattr(decode_loop, "run_batch", counting)
    return sizes


def _alone(generator, requests):
    return [generator.generate_batch([r])[0] for r in requests]


def _same(a, b):
    assert (a.completion, a.token_ids, a.stop_reason) == (b.completion, b.token_ids, b.stop_reason)


def test_rows_that_cannot_start_fail_alone(tiny_generator, batches):
    context = tiny_generator.context_length
    bad = [
        GenerationRequest("x", "[a-z]+", temperature=1e39),
        GenerationRequest("x", "a(?=b)"),
        GenerationRequest(" hello" * (context + 5), "[a-z]+"),
        GenerationRequest("x", "[a-z]+", max_new_tokens=context),
    ]
    requests = [GOOD[0], bad[0], GOOD[1], bad[1], bad[2], GOOD[2], bad[3]]
    outcomes = tiny_generator.generate_batch(requests, return_exceptions=True)
    assert batches == [3]  # the three good rows, decoded once, together
    assert isinstance(outcomes[1], FieldError) and outcomes[1].field == "temperature"
    assert isinstance(outcomes[3], RegexError) and "lookahead" in str(outcomes[3])
    assert isinstance(outcomes[4], PromptTooLongError) and "shorten the prompt" in str(outcomes[4])
    assert isinstance(outcomes[6], PromptTooLongError)
    for request, outcome, alone in zip(
        GOOD, [outcomes[i] for i in (0, 2, 5)], _alone(tiny_generator, GOOD), strict=True
    ):
        _same(outcome, alone)
        assert outcome.matched and any(
            re.fullmatch(p, outcome.completion) for p in request.patterns
        )
    # Without return_exceptions the first failure is raised, as before.
    with pytest.raises(FieldError):
        tiny_generator.generate_batch(requests)


def test_a_tokenizer_failure_on_one_prompt_fails_that_row(tiny_generator, monkeypatch, batches):
    real = tiny_generator.encode_prompt

    def encode(prompt):
        if prompt == "boom":
            raise RuntimeError("the tokenizer cannot take this prompt")
        return real(prompt)

    monkeypatch.setattr(tiny_generator, "encode_prompt", encode)
    requests = [GOOD[0], GenerationRequest("boom", "[a-z]+"), GOOD[1]]
    outcomes = tiny_generator.generate_batch(requests, return_exceptions=True)
    assert batches == [2]
    assert isinstance(outcomes[1], RuntimeError)
    monkeypatch.undo()
    _same(outcomes[0], tiny_generator.generate_batch([GOOD[0]])[0])
    _same(outcomes[2], tiny_generator.generate_batch([GOOD[1]])[0])


def test_a_callback_failing_for_one_row_ends_that_row_only(tiny_generator, batches):
    seen = {0: [], 1: [], 2: []}

    def on_token(row, token, text):
        if row == 1 and len(seen[1]) == 1:
            raise OSError("this row's client went away")
        seen[row].append(token)

    outcomes = tiny_generator.generate_batch(GOOD, on_token=on_token, return_exceptions=True)
    assert batches == [3]
    assert isinstance(outcomes[1], OSError)
    for row in (0, 2):
        alone = tiny_generator.generate_batch([GOOD[row]])[0]
        _same(outcomes[row], alone)
        assert seen[row] == alone.token_ids
    with pytest.raises(OSError):
        tiny_generator.generate_batch(GOOD, on_token=on_token)


def test_an_index_failing_to_grow_fails_its_rows_only(tiny_generator, batches, monkeypatch):
    """Rows are built as decoding reaches them; an index that cannot build one fails the rows
    that use it, at that step, and the batch decodes on without them."""
    pattern = r"[a-z]{3,6}"
    failing = tiny_generator.compile(pattern)

    def ensure_rows(states):
        raise MemoryError("no room for more rows")

    monkeypatch.setattr(failing, "ensure_rows", ensure_rows)
    requests = [GOOD[0], GenerationRequest("Say ", pattern), GOOD[1], GOOD[2]]
    outcomes = tiny_generator.generate_batch(requests, return_exceptions=True)
    assert batches == [4]
    assert isinstance(outcomes[1], MemoryError)
    for outcome, request in zip([outcomes[i] for i in (0, 2, 3)], GOOD, strict=True):
        _same(outcome, tiny_generator.generate_batch([request])[0])


def test_compiled_indexes_are_used_and_decoding_never_compiles(tiny_model, monkeypatch):
    import regexlm.index
    from regexlm.index import cache

    model, tokenizer = tiny_model
    monkeypatch.setattr(cache, "MEMORY_ENTRIES", 1)
    cache.clear_memory()
    generator = Generator(model, tokenizer, backend="torch")
    patterns = [r"[0-9]{3}", r"(yes|no)", r"[a-z]+@[a-z]+\.com", r"\d{2}:\d{2}"]
    indexes = [generator.compile(p) for p in patterns]  # the cache now holds the last only
    calls = []
    real = regexlm.index.compile

    def counting(*args, **kwargs):
        calls.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(regexlm.index, "compile", counting)
    requests = [GenerationRequest("x ", p, max_new_tokens=10, temperature=0) for p in patterns]
    outcomes = generator.generate_batch(requests, indexes=indexes)
    assert calls == []
    assert all(
        o.matched and re.fullmatch(p, o.completion) for o, p in zip(outcomes, patterns, strict=True)
    )
    # Without them, the evicted patterns are compiled again, here, on the decoding thread.
    generator.generate_batch(requests)
    assert len(calls) >= len(patterns) - 1
    with pytest.raises(ValueError, match="2 indexes for 4 requests"):
        generator.generate_batch(requests, indexes=indexes[:2])
