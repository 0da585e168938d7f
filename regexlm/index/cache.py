"""Index caches: an in-memory LRU bounded by bytes, in front of a directory of files.

Key: the patterns, the vocabulary fingerprint and the library version (plus the device, in
memory). The memory cache returns the very same :class:`TokenIndex` object; treat it as
read-only. Indexes grow as decoding reaches new states, so the memory bound counts each
entry's bytes as they are when an entry is added, and evicts least recently used entries until
the total fits (:data:`MEMORY_BYTES`, ``REGEXLM_INDEX_MEMORY_BYTES``). The generator and the
server use this one cache, so an index they both hold is counted once and evicted once.

On disk (``$REGEXLM_CACHE/index/``) only *complete* indexes are kept (every row built by the
exploration that runs at an index's first use, exact ``min_tokens``): a lazy index's future
rows need its automaton, which is cheaper to rebuild than to store. An index is written when
that exploration has run, not at compile. Each entry is two files, written atomically:

* ``<key>.safetensors``: the tables (no pickle, nothing executable);
* ``<key>.json``: metadata (patterns, fingerprint, version, start state, EOS ids) and the
  SHA-256 of the tensor file. It is written last, so a half-written entry is never read.

A file that is missing, unreadable, or fails its checksum or metadata check is deleted and
reported as a miss; the caller rebuilds and rewrites it. Any other failure to read an entry (a
fault in the reading code, not in the file) is a miss too, and logged as a warning. The
directory is bounded too
(:data:`DISK_BYTES`, ``REGEXLM_INDEX_DISK_BYTES``): when a write takes it over the bound, the
oldest entries (by modification time) go until the total fits. The directory is listed only
when this process's running tally of it passes the bound, and at its first write and every
:data:`RESCAN_WRITES` writes after (to count what other processes wrote), so a write costs the
same with ten entries or ten thousand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

import torch

from regexlm.index.token_index import TokenIndex, complete_rows

logger = logging.getLogger(__name__)

FORMAT = 2
# Writes to the index directory between two scans of it at most (see _evict_disk)
RESCAN_WRITES = 64
_DISK_TENSORS = ("next_by_class", "class_of", "min_tokens", "match_index")


def _env_bytes(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise ValueError(f"{name} must be a number of bytes, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {raw!r}")
    return value


MEMORY_BYTES = _env_bytes("REGEXLM_INDEX_MEMORY_BYTES", 1 << 30)
MEMORY_ENTRIES: int | None = None  # an optional cap on the number of entries as well
DISK_BYTES = _env_bytes("REGEXLM_INDEX_DISK_BYTES", 1 << 30)


def configure(
    *,
    memory_bytes: int | None = None,
    disk_bytes: int | None = None,
    memory_entries: int | None = None,
) -> None:
    """Set the bounds of the memory cache (bytes, and optionally entries) and of the disk cache
    (bytes). They are process-wide."""
    global MEMORY_BYTES, DISK_BYTES, MEMORY_ENTRIES
    if memory_bytes is not None:
        MEMORY_BYTES = int(memory_bytes)
    if memory_entries is not None:
        MEMORY_ENTRIES = int(memory_entries)
    if disk_bytes is not None:
        DISK_BYTES = int(disk_bytes)
    with _lock:
        _evict_memory()


def memory_bytes() -> int:
    """Bytes held now by the indexes in the memory cache."""
    with _lock:
        return sum(index.nbytes for index in _memory.values())


_memory: OrderedDict = OrderedDict()
_lock = threading.Lock()
disk_enabled = True


def _version() -> str:
    from regexlm import __version__

    return __version__


def entry_name(patterns: tuple[str, ...], fingerprint: str) -> str:
    blob = json.dumps(
        {"patterns": list(patterns), "vocab": fingerprint, "version": _version(), "format": FORMAT}
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:40]


# per index directory: [its bytes as last scanned plus this process's writes since, writes since]
_disk_tally: dict[Path, list[int]] = {}
_disk_lock = threading.Lock()


def cache_directory() -> Path:
    from regexlm.paths import cache_dir

    return cache_dir("index")


def clear_memory() -> None:
    with _lock:
        _memory.clear()


def lookup(
    patterns: tuple[str, ...],
    fingerprint: str,
    device: torch.device,
    *,
    disk: bool = True,
    mode: str = "auto",
) -> TokenIndex | None:
    """The cached index, from memory or (``disk``) from the directory; None on a miss.

    ``mode`` is the index mode it was compiled in (see :mod:`regexlm.index.compiler`); only
    ``"auto"`` indexes are on disk."""
    key = (patterns, fingerprint, _version(), str(device), mode)
    with _lock:
        found = _memory.get(key)
        if found is not None:
            _memory.move_to_end(key)
            return found
    if not disk_enabled or not disk or mode != "auto":
        return None
    found = load(patterns, fingerprint, device)
    if found is not None:
        _remember(key, found)
    return found


def store(index: TokenIndex, device: torch.device, mode: str = "auto") -> None:
    """Remember ``index`` in memory, and on disk once its exploration has run (at its first
    use, see :meth:`TokenIndex.settle`) if that made it complete."""
    _remember((index.patterns, index.vocab_fingerprint, _version(), str(device), mode), index)
    if mode == "auto":
        ref = weakref.ref(index)
        index._rows.when_settled(lambda: _save_complete(ref()))


def _save_complete(index: TokenIndex | None) -> None:
    if index is None or not disk_enabled or not index.exact:
        return
    try:
        tensor_path = save(index)
        written = tensor_path.stat().st_size + tensor_path.with_suffix(".json").stat().st_size
        _evict_disk(written)
    except OSError:
        pass  # a read-only or full cache directory only costs a rebuild next time


def _evict_disk(written: int = 0) -> None:
    """After a write of ``written`` bytes: delete the oldest entries until the directory holds
    at most :data:`DISK_BYTES`. The directory is scanned (every entry listed and measured, a
    cost that grows with the entries) only when this process's tally of it passes the bound,
    at its first write, and every :data:`RESCAN_WRITES` writes, which count what other
    processes wrote to it meanwhile; other writes add to the tally."""
    directory = cache_directory()
    with _disk_lock:
        tally = _disk_tally.get(directory)
        if tally is not None:
            tally[0] += written
            tally[1] += 1
            if tally[0] <= DISK_BYTES and tally[1] < RESCAN_WRITES:
                return
        _disk_tally[directory] = [_scan_and_evict(directory), 0]


def _scan_and_evict(directory: Path) -> int:
    """Delete the oldest entries of ``directory`` until it holds at most :data:`DISK_BYTES`;
    the bytes it holds then."""
    entries = []
    total = 0
    for meta in directory.glob("*.json"):
        tensor = meta.with_suffix(".safetensors")
        try:
            size = meta.stat().st_size + (tensor.stat().st_size if tensor.exists() else 0)
            entries.append((meta.stat().st_mtime, meta, tensor, size))
        except OSError:
            continue
        total += size
    entries.sort()
    for _, meta, tensor, size in entries:
        if total <= DISK_BYTES:
            break
        _discard(meta, tensor)
        total -= size
    return total


def _remember(key, index: TokenIndex) -> None:
    with _lock:
        _memory[key] = index
        _memory.move_to_end(key)
        _evict_memory()


def _evict_memory() -> None:
    total = sum(index.nbytes for index in _memory.values())
    while _memory and (
        total > MEMORY_BYTES or (MEMORY_ENTRIES is not None and len(_memory) > MEMORY_ENTRIES)
    ):
        _, old = _memory.popitem(last=False)
        total -= old.nbytes


def _paths(patterns, fingerprint) -> tuple[Path, Path]:
    base = cache_directory() / entry_name(patterns, fingerprint)
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def save(index: TokenIndex) -> Path:
    from safetensors.torch import save

    tensor_path, meta_path = _paths(index.patterns, index.vocab_fingerprint)
    tables = index.host_tables()
    blob = save({n: torch.from_numpy(tables[n]) for n in _DISK_TENSORS})  # new arrays
    meta = {
        "format": FORMAT,
        "version": _version(),
        "patterns": list(index.patterns),
        "vocab_fingerprint": index.vocab_fingerprint,
        "start_state": index.start_state,
        "eos_ids": list(index.eos_ids),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    _atomic_write(tensor_path, blob)
    _atomic_write(meta_path, json.dumps(meta).encode("utf-8"))
    return tensor_path


def _damaged_entry_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged, truncated or foreign entry raises: a miss, said nothing of."""
    from safetensors import SafetensorError

    return (OSError, ValueError, KeyError, SafetensorError)


def _discard(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


def load(patterns: tuple[str, ...], fingerprint: str, device: torch.device) -> TokenIndex | None:
    from safetensors.torch import load as load_tensors

    tensor_path, meta_path = _paths(patterns, fingerprint)
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text("utf-8"))
        blob = tensor_path.read_bytes()
        ok = (
            meta.get("format") == FORMAT
            and meta.get("version") == _version()
            and tuple(meta.get("patterns", ())) == tuple(patterns)
            and meta.get("vocab_fingerprint") == fingerprint
            and hashlib.sha256(blob).hexdigest() == meta.get("sha256")
        )
        if not ok:
            raise ValueError("cache entry does not match its metadata")
        tensors = {n: t.numpy() for n, t in load_tensors(blob).items()}
        rows = complete_rows(
            patterns=tuple(patterns),
            vocab_fingerprint=fingerprint,
            eos_ids=[int(i) for i in meta["eos_ids"]],
            start=int(meta["start_state"]),
            next_by_class=tensors["next_by_class"],
            class_of=tensors["class_of"],
            min_tokens=tensors["min_tokens"],
            match_index=tensors["match_index"],
        )
        index = TokenIndex(rows, device)
    except Exception as exc:
        if not isinstance(exc, _damaged_entry_errors()):  # a fault of ours, not of the file
            logger.warning(
                "the disk cache entry %s could not be read (%s: %s); it is discarded and the "
                "pattern compiled again",
                tensor_path.name,
                type(exc).__name__,
                exc,
            )
        _discard(tensor_path, meta_path)
        return None
    index.info["from_disk"] = True
    return index
