"""The processor's pattern cache: bounded by entries and by the index layer's byte bound."""

from __future__ import annotations

from regexlm.index import Vocabulary
from regexlm.index import cache as index_cache
from regexlm.vllm.patterns import CompiledPattern, PatternCache


def test_pattern_cache_keeps_to_the_byte_bound(smollm2_tokenizer, monkeypatch):
    vocab = Vocabulary.from_tokenizer(smollm2_tokenizer)
    cache = PatternCache(vocab)
    first = cache.get((r"\w{1,30}",))
    monkeypatch.setattr(index_cache, "MEMORY_BYTES", 2 * first.nbytes + first.nbytes // 2)
    for n in range(31, 36):
        cache.get((rf"\w{{1,{n}}}",))
    held = [e for e in cache._entries.values() if isinstance(e, CompiledPattern)]
    assert 1 <= len(held) <= 2
    assert sum(e.nbytes for e in held) <= index_cache.MEMORY_BYTES or len(held) == 1
    assert (r"\w{1,30}",) not in cache._entries  # the oldest went first
