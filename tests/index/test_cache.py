"""The memory and disk caches: hits, round trips, bypass, and corrupt files."""

from __future__ import annotations

import json

import torch

import regexlm
from regexlm.index import cache

PATTERN = r"[a-z]+@[a-z]+\.com"


def _used(pattern, vocab, **options):
    """Compile and run the exploration a first use would run (when the disk entry is written)."""
    return regexlm.compile(pattern, vocab, **options).settle()


def _same(a, b) -> bool:
    return (
        all(
            torch.equal(getattr(a, n), getattr(b, n))
            for n in (
                "next_by_class",
                "row_of",
                "class_of",
                "bitmask",
                "min_tokens",
                "match_index",
            )
        )
        and a.start_state == b.start_state
        and a.eos_ids == b.eos_ids
    )


def test_memory_cache_returns_the_same_index(index_cache_dir, smollm2_vocab):
    a = regexlm.compile(PATTERN, smollm2_vocab)
    assert regexlm.compile(PATTERN, smollm2_vocab) is a
    assert regexlm.compile([PATTERN], smollm2_vocab) is a  # one pattern, either spelling
    assert regexlm.compile(PATTERN, smollm2_vocab, cache=False) is not a


def test_disk_round_trip(index_cache_dir, smollm2_vocab):
    built = _used(PATTERN, smollm2_vocab)
    files = sorted(p.suffix for p in index_cache_dir.iterdir())
    assert files == [".json", ".safetensors"]
    cache.clear_memory()
    loaded = _used(PATTERN, smollm2_vocab)
    assert loaded is not built and loaded.info.get("from_disk")
    assert _same(loaded, built)


def test_cache_false_neither_reads_nor_writes(index_cache_dir, smollm2_vocab):
    regexlm.compile(PATTERN, smollm2_vocab, cache=False)
    assert not index_cache_dir.exists() or not any(index_cache_dir.iterdir())


def test_corrupt_tensor_file_is_detected_and_rebuilt(index_cache_dir, smollm2_vocab):
    built = _used(PATTERN, smollm2_vocab)
    (tensor_file,) = index_cache_dir.glob("*.safetensors")
    data = bytearray(tensor_file.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside a table
    tensor_file.write_bytes(bytes(data))
    cache.clear_memory()
    again = _used(PATTERN, smollm2_vocab)
    assert not again.info.get("from_disk")  # rebuilt, not read
    assert _same(again, built)
    cache.clear_memory()
    assert _used(PATTERN, smollm2_vocab).info.get("from_disk")  # rewritten intact


def test_truncated_or_mismatched_entries_are_misses(index_cache_dir, smollm2_vocab):
    _used(PATTERN, smollm2_vocab)
    (tensor_file,) = index_cache_dir.glob("*.safetensors")
    (meta_file,) = index_cache_dir.glob("*.json")
    tensor_file.write_bytes(tensor_file.read_bytes()[:100])
    assert cache.load((PATTERN,), smollm2_vocab.fingerprint, torch.device("cpu")) is None
    assert not meta_file.exists()  # the broken entry was removed
    regexlm.compile(PATTERN, smollm2_vocab, cache=False)
    cache.clear_memory()
    _used(PATTERN, smollm2_vocab)
    meta = json.loads(meta_file.read_text())
    meta["patterns"] = ["something else"]
    meta_file.write_text(json.dumps(meta))
    assert cache.load((PATTERN,), smollm2_vocab.fingerprint, torch.device("cpu")) is None


def test_keys_separate_vocabularies_and_patterns(index_cache_dir, smollm2_vocab, gemma_vocab):
    a = _used(PATTERN, smollm2_vocab)
    b = _used(PATTERN, gemma_vocab)
    c = _used(r"[a-z]+@[a-z]+\.org", smollm2_vocab)
    assert a.vocab_size != b.vocab_size
    assert not torch.equal(a.bitmask, c.bitmask)
    assert len(list(index_cache_dir.glob("*.json"))) == 3


def test_memory_cache_is_bounded_by_bytes(index_cache_dir, smollm2_vocab, monkeypatch):
    first = _used("a", smollm2_vocab)
    monkeypatch.setattr(cache, "MEMORY_BYTES", 3 * first.nbytes + first.nbytes // 2)
    for p in ("b", "c", "d"):
        _used(p, smollm2_vocab)
    assert len(cache._memory) == 3
    assert cache.memory_bytes() <= cache.MEMORY_BYTES
    assert _used("a", smollm2_vocab) is not first  # evicted, read back from disk


def test_disk_cache_is_bounded_oldest_first(index_cache_dir, smollm2_vocab, monkeypatch):
    import os
    import time

    _used("a", smollm2_vocab)
    (meta,) = index_cache_dir.glob("*.json")
    one_entry = sum(p.stat().st_size for p in index_cache_dir.iterdir())
    old = time.time() - 100
    os.utime(meta, (old, old))
    monkeypatch.setattr(cache, "DISK_BYTES", one_entry + one_entry // 2)
    _used("b", smollm2_vocab)
    names = {p.name for p in index_cache_dir.glob("*.json")}
    assert meta.name not in names and len(names) == 1  # the oldest entry made room


def test_lazy_indexes_are_not_written_to_disk(index_cache_dir, smollm2_vocab):
    index = regexlm.compile(r"\w{1,50}", smollm2_vocab)
    assert not index.exact
    assert not any(index_cache_dir.glob("*.json"))


def test_an_index_is_written_to_disk_when_first_used(index_cache_dir, smollm2_vocab):
    index = regexlm.compile(PATTERN, smollm2_vocab)
    assert not index_cache_dir.exists() or not any(index_cache_dir.iterdir())
    index.bitmask_rows([index.start_state])  # the start row alone: still nothing to write
    assert not index_cache_dir.exists() or not any(index_cache_dir.iterdir())
    assert int(index.row_of.shape[0]) > 1  # the tables a step reads: the first use
    assert index.exact and len(list(index_cache_dir.glob("*.json"))) == 1


def test_an_index_read_from_disk_has_every_attribute_but_those_of_building_rows(
    index_cache_dir, smollm2_vocab
):
    # the disk cache makes its rows without IndexRows.__init__: an attribute added there and not
    # here would make every read fail (and the entry be discarded) instead of being reused
    built = _used(PATTERN, smollm2_vocab)
    cache.clear_memory()
    loaded = _used(PATTERN, smollm2_vocab)
    assert loaded.info.get("from_disk")
    only_for_building = {"epoch", "index_of_key", "keys", "strict", "usable"}
    assert set(vars(built._rows)) - set(vars(loaded._rows)) <= only_for_building
    assert set(vars(loaded._rows)) <= set(vars(built._rows))


def test_an_entry_that_fails_for_a_reason_of_ours_is_reported(
    index_cache_dir, smollm2_vocab, monkeypatch, caplog
):
    # a damaged file is a silent miss; an error in reading code (here: complete_rows raising
    # AttributeError) is a miss too, but logged, so it does not hide behind recompiles
    import logging

    _used(PATTERN, smollm2_vocab)
    cache.clear_memory()

    def broken(**kwargs):
        raise AttributeError("no such field")

    monkeypatch.setattr(cache, "complete_rows", broken)
    with caplog.at_level(logging.WARNING, logger="regexlm.index.cache"):
        again = _used(PATTERN, smollm2_vocab)
    assert not again.info.get("from_disk")
    assert any("AttributeError: no such field" in r.getMessage() for r in caplog.records)


def _count_scans(monkeypatch) -> list:
    scans = []
    real = cache._scan_and_evict

    def counting(directory):
        scans.append(directory)
        return real(directory)

    monkeypatch.setattr(cache, "_scan_and_evict", counting)
    return scans


def test_writes_under_the_bound_list_the_directory_once(
    index_cache_dir, smollm2_vocab, monkeypatch
):
    scans = _count_scans(monkeypatch)
    for p in ("a", "b", "c", "d"):
        _used(p, smollm2_vocab)
    assert len(list(index_cache_dir.glob("*.json"))) == 4
    assert len(scans) == 1  # the first write; the others only add to the tally


def test_the_directory_is_listed_again_every_rescan_writes(
    index_cache_dir, smollm2_vocab, monkeypatch
):
    monkeypatch.setattr(cache, "RESCAN_WRITES", 2)
    scans = _count_scans(monkeypatch)
    for p in ("a", "b", "c", "d", "e"):
        _used(p, smollm2_vocab)
    assert len(scans) == 3  # writes 1, 3 and 5


def test_what_other_processes_wrote_is_counted_at_the_next_listing(
    index_cache_dir, smollm2_vocab, monkeypatch
):
    import os
    import shutil
    import time

    _used("a", smollm2_vocab)  # the first write lists the directory: one entry
    one_entry = sum(p.stat().st_size for p in index_cache_dir.iterdir())
    (meta,) = index_cache_dir.glob("*.json")
    for n in range(3):  # three entries written behind this process's back, older than any
        for f in (meta, meta.with_suffix(".safetensors")):
            copy = index_cache_dir / f"other{n}{f.suffix}"
            shutil.copyfile(f, copy)
            old = time.time() - 100 + n
            os.utime(copy, (old, old))
    monkeypatch.setattr(cache, "DISK_BYTES", 3 * one_entry + one_entry // 2)
    monkeypatch.setattr(cache, "RESCAN_WRITES", 2)
    _used("b", smollm2_vocab)  # the tally (two entries) fits: nothing listed, nothing deleted
    assert len(list(index_cache_dir.glob("*.json"))) == 5
    _used("c", smollm2_vocab)  # a listing: six entries, the three oldest go
    names = {p.stem for p in index_cache_dir.glob("*.json")}
    assert len(names) == 3 and not any(n.startswith("other") for n in names)
    assert sum(p.stat().st_size for p in index_cache_dir.iterdir()) <= cache.DISK_BYTES
