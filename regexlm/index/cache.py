"""Index caches: a small in-memory LRU in front of a directory of files.

Key: the patterns, the vocabulary fingerprint and the library version (plus the device, in
memory). The memory cache returns the very same :class:`TokenIndex` object; treat it as
read-only.

On disk (``$REGEXLM_CACHE/index/``) each index is two files, written atomically:

* ``<key>.safetensors``: the tables (no pickle, nothing executable). The bitmask is left out and
  re-packed on load: it is the largest table and a pure function of the others.
* ``<key>.json``: metadata (patterns, fingerprint, version, start state, EOS ids) and the
  SHA-256 of the tensor file. It is written last, so a half-written entry is never read.

A file that is missing, unreadable, or fails its checksum or metadata check is deleted and
reported as a miss; the caller rebuilds and rewrites it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from regexlm.index.bitmask import pack_bitmask
from regexlm.index.token_index import TokenIndex

FORMAT = 1
MEMORY_ENTRIES = 64
_DISK_TENSORS = ("next_by_class", "class_of", "min_tokens", "match_index", "dfa_state")

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


def cache_directory() -> Path:
    from regexlm.paths import cache_dir

    return cache_dir("index")


def clear_memory() -> None:
    with _lock:
        _memory.clear()


def lookup(patterns: tuple[str, ...], fingerprint: str, device: torch.device) -> TokenIndex | None:
    key = (patterns, fingerprint, _version(), str(device))
    with _lock:
        found = _memory.get(key)
        if found is not None:
            _memory.move_to_end(key)
            return found
    if not disk_enabled:
        return None
    found = load(patterns, fingerprint, device)
    if found is not None:
        _remember(key, found)
    return found


def store(index: TokenIndex, device: torch.device) -> None:
    _remember((index.patterns, index.vocab_fingerprint, _version(), str(device)), index)
    if disk_enabled:
        try:
            save(index)
        except OSError:
            pass  # a read-only or full cache directory only costs a rebuild next time


def _remember(key, index: TokenIndex) -> None:
    with _lock:
        _memory[key] = index
        _memory.move_to_end(key)
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)


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
    blob = save({n: getattr(index, n).detach().cpu().contiguous() for n in _DISK_TENSORS})
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
        tensors = load_tensors(blob)
        tensors = {n: tensors[n].to(device) for n in _DISK_TENSORS}
        bitmask = pack_bitmask(
            tensors["next_by_class"] >= 0, tensors["class_of"].long(), tensors["class_of"].numel()
        )
        index = TokenIndex(
            bitmask=bitmask,
            start_state=int(meta["start_state"]),
            eos_ids=[int(i) for i in meta["eos_ids"]],
            patterns=tuple(patterns),
            vocab_fingerprint=fingerprint,
            **tensors,
        )
    except Exception:
        _discard(tensor_path, meta_path)
        return None
    index.info["from_disk"] = True
    return index
