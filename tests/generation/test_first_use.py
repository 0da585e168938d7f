"""A new index's exploration runs beside the prefill, and decoding is the same as with an index
explored before the call.

Compile builds only the start row (:meth:`regexlm.index.TokenIndex.settle`); with the model on
an accelerator the decode loop runs the rest on a worker thread while the model reads the
prompts and waits for it before the first step; on the CPU it runs at the first step. An
exploration that fails fails the rows of its pattern only.
"""

from __future__ import annotations

import threading

import regexlm
from regexlm.generation import GenerationRequest, decode_loop
from regexlm.index.token_index import IndexRows

REQUESTS = [
    GenerationRequest("Mail: ", r"[a-z]{2,5}@[a-z]{2,4}\.(com|org)", max_new_tokens=9, seed=3),
    GenerationRequest("Year: ", r"(19|20)[0-9]{2}", max_new_tokens=6, temperature=0),
]


def _key(c):
    return c.completion, c.token_ids, c.stop_reason


def test_the_exploration_runs_beside_the_prefill_and_changes_nothing(tiny_generator, monkeypatch):
    vocab = tiny_generator.vocabulary
    fresh = [regexlm.compile(r.pattern, vocab, cache=False) for r in REQUESTS]  # none from disk
    assert not any(index.settled for index in fresh)
    threads = []
    real = IndexRows.settle

    def recording(self):
        if self.pending is not None:
            threads.append(threading.current_thread().name)
        return real(self)

    monkeypatch.setattr(IndexRows, "settle", recording)
    monkeypatch.setattr(decode_loop, "worth_overlapping", lambda device: True)  # as on a GPU
    beside = tiny_generator.generate_batch(REQUESTS, indexes=fresh)
    assert all(index.settled for index in fresh)
    assert len(threads) == 2 and all(name.startswith("regexlm-settle") for name in threads)

    settled = [regexlm.compile(r.pattern, vocab, cache=False).settle() for r in REQUESTS]
    before = tiny_generator.generate_batch(REQUESTS, indexes=settled)
    assert [_key(c) for c in beside] == [_key(c) for c in before]


def test_with_the_model_on_the_cpu_the_exploration_runs_at_the_first_step(
    tiny_generator, monkeypatch
):
    # the forward pass uses every core there: an exploration beside it only slows it down
    index = regexlm.compile(REQUESTS[1].pattern, tiny_generator.vocabulary, cache=False)
    threads = []
    real = IndexRows.settle

    def recording(self):
        if self.pending is not None:
            threads.append(threading.current_thread())
        return real(self)

    monkeypatch.setattr(IndexRows, "settle", recording)
    tiny_generator.generate_batch([REQUESTS[1]], indexes=[index])
    assert threads == [threading.current_thread()] and index.settled


def test_a_failing_exploration_fails_its_own_rows_only(tiny_generator):
    regexlm.index.cache.clear_memory()
    failing = regexlm.compile(r"[a-z]{3,6}!", tiny_generator.vocabulary, cache=False)
    good = regexlm.compile(REQUESTS[1].pattern, tiny_generator.vocabulary, cache=False)

    def settle():
        raise MemoryError("no room to explore")

    failing._rows.settle = settle
    requests = [GenerationRequest("Say ", r"[a-z]{3,6}!"), REQUESTS[1]]
    outcomes = tiny_generator.generate_batch(
        requests, indexes=[failing, good], return_exceptions=True
    )
    assert isinstance(outcomes[0], MemoryError)
    alone = tiny_generator.generate_batch([REQUESTS[1]])[0]
    assert _key(outcomes[1]) == _key(alone)


def test_prepare_makes_the_vocabulary_and_what_its_patterns_share(tiny_model, prepared):
    from regexlm.generation import Generator

    model, tokenizer = tiny_model
    generator = Generator(model, tokenizer, backend="torch")
    assert generator._vocabulary is None  # nothing is made before it is asked for
    assert generator.prepare() is generator
    assert generator._vocabulary is not None and prepared == [generator.vocabulary]
    out = generator.generate(REQUESTS[1].prompt, REQUESTS[1].pattern, max_new_tokens=6)
    assert out.matched and prepared == [generator.vocabulary]  # made once, not per request
