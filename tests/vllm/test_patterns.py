"""The processor's pattern cache: bounded by entries and by the index layer's byte bound; a new
index's exploration starts on the worker as soon as it is compiled where the model runs on an
accelerator."""

from __future__ import annotations

import threading

import numpy as np

from regexlm.index import TokenIndex, Vocabulary
from regexlm.index import cache as index_cache
from regexlm.vllm.patterns import CompiledPattern, PatternCache


def test_pattern_cache_keeps_to_the_byte_bound(smollm2_tokenizer, monkeypatch):
    vocab = Vocabulary.from_tokenizer(smollm2_tokenizer)
    cache = PatternCache(vocab)
    first = cache.get((r"\w{1,30}",))
    first.index.settle()  # sizes as they stand once explored
    monkeypatch.setattr(index_cache, "MEMORY_BYTES", 2 * first.nbytes + first.nbytes // 2)
    for n in range(31, 36):
        cache.get((rf"\w{{1,{n}}}",)).index.settle()
    held = [e for e in cache._entries.values() if isinstance(e, CompiledPattern)]
    assert 1 <= len(held) <= 2
    assert sum(e.nbytes for e in held) <= index_cache.MEMORY_BYTES or len(held) == 1
    assert (r"\w{1,30}",) not in cache._entries  # the oldest went first


def test_a_new_pattern_is_explored_on_the_worker_beside_an_accelerator(
    smollm2_tokenizer, monkeypatch
):
    vocab = Vocabulary.from_tokenizer(smollm2_tokenizer)
    index_cache.clear_memory()
    monkeypatch.setattr(index_cache, "disk_enabled", False)  # it may hold the index explored
    threads, done = [], threading.Event()
    real = TokenIndex.settle

    def recording(self):
        threads.append(threading.current_thread().name)
        done.set()
        return real(self)

    monkeypatch.setattr(TokenIndex, "settle", recording)
    on_cpu = PatternCache(vocab).get((r"[a-z]{2,8}@[a-z]{2,8}\.org",))
    assert not done.wait(0.5) and not on_cpu.index.settled  # left for the first mask
    compiled = PatternCache(vocab, explore_beside=True).get((r"[a-z]{2,9}@[a-z]{2,9}\.org",))
    assert done.wait(30)
    assert threads[0].startswith("regexlm-settle")
    compiled.tables(np.array([compiled.start_state]))  # waits for the worker, if still busy
    assert compiled.index.settled
