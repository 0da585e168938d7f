"""The trie walk in C (``trie_walk.c``), built with the system C compiler on first use.

(The same library holds the check whether a new row splits any token class, the hot part of
:meth:`regexlm.index.token_classes.TokenClasses.refine` on rows that allow most tokens.)

The numpy walk of :mod:`regexlm.index.rows` goes level by level, a few array operations per
depth whatever the batch; that is fast when a walk is narrow and wasteful when it covers most of
the vocabulary (a row of ``.{0,500}`` or ``\\w+`` visits every node of the trie). The C walk
visits the same nodes depth first, a few nanoseconds each, and asks the automaton for a row of
transitions only when it meets one that is not computed yet (a callback into the lazy DFA).

The shared library is compiled once per machine into the cache (``$REGEXLM_CACHE/native``),
named by a hash of its source, and loaded with :mod:`ctypes`: no build step at install time,
and nothing to build for the pure-Python wheel. Where no compiler works, or with
``REGEXLM_NATIVE=0``, :func:`library` returns None and the numpy walk is used instead (it gives
the same rows; the tests compare the two).

A walk visits the trie once per origin state in preorder and jumps over every subtree where
the automaton dies (see ``trie_walk.c``).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("trie_walk.c")
NATIVE_VARIABLE = "REGEXLM_NATIVE"
FLUSH_CAPACITY = 1 << 16  # triples per output buffer

FILL_ROW = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int32)
FLUSH = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64)

_lock = threading.Lock()
_loaded: list = []  # [library or None] once tried


def enabled() -> bool:
    """Whether the C walk may be used (``REGEXLM_NATIVE=0`` turns it off)."""
    return os.environ.get(NATIVE_VARIABLE, "1").strip() not in ("0", "false", "no", "off")


def library():
    """The loaded C walk, or None where it is off or cannot be built (logged once)."""
    if not enabled():
        return None
    if _loaded:
        return _loaded[0]
    with _lock:
        if not _loaded:
            try:
                _loaded.append(_load(_build()))
            except Exception as exc:  # no compiler, no cache directory, ...
                log.warning(
                    "regexlm: the C trie walk is unavailable (%s); using the numpy walk", exc
                )
                _loaded.append(None)
    return _loaded[0]


def _build() -> Path:
    from regexlm.paths import cache_dir

    source = SOURCE.read_bytes()
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc) on PATH")
    digest = hashlib.sha256(source + compiler.encode()).hexdigest()[:16]
    target = cache_dir("native") / f"trie_walk-{digest}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        command = [compiler, "-O3", "-shared", "-fPIC", "-o", str(built), str(SOURCE)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[:500]}")
        os.replace(built, target)  # atomic: concurrent builders agree
    return target


def _load(path: Path):
    lib = ctypes.CDLL(str(path))
    fn = lib.regexlm_walk_rows
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    fn.argtypes = [p, p, p, p, i64, i32, p, p, i64, p, i64, p, p, p, i64, FILL_ROW, FLUSH]
    fn.restype = i64
    keeps = lib.regexlm_row_keeps_classes
    keeps.argtypes = [p, p, p, i64, p, i64, p]
    keeps.restype = i32
    _helpers["row_keeps_classes"] = keeps
    pack = lib.regexlm_pack_rows
    pack.argtypes = [p, i64, i64, p, i64, i64, p]
    pack.restype = i32
    _helpers["pack_rows"] = pack
    return fn


_helpers: dict = {}


def row_keeps_classes(class_of, tokens, targets, size, row) -> bool | None:
    """The C check of :meth:`regexlm.index.token_classes.TokenClasses.refine` (see
    ``trie_walk.c``): True with ``row`` filled when no class splits, False when one does, None
    where the C code is not available."""
    if library() is None:
        return None
    tokens = np.ascontiguousarray(tokens, dtype=np.int64)
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    done = _helpers["row_keeps_classes"](
        _ptr(class_of), _ptr(tokens), _ptr(targets), tokens.size, _ptr(size), size.size, _ptr(row)
    )
    if done == -2:
        raise MemoryError("no memory for the class check of a row")
    return bool(done)


def pack_rows(rows: np.ndarray, class_of: np.ndarray, vocab_size: int) -> np.ndarray | None:
    """``int32[n, ceil(V/32)]`` allowed-token bitmasks of ``rows int32[n, C]`` (a token is
    allowed where its class's entry is not -1), packed in C; None where the C code is not
    available. ``TokenIndex._pack_host`` is the numpy reference."""
    if library() is None:
        return None
    rows = np.ascontiguousarray(rows, dtype=np.int32)
    class_of = np.ascontiguousarray(class_of, dtype=np.int32)
    num_words = (vocab_size + 31) // 32
    out = np.empty((rows.shape[0], num_words), dtype=np.int32)
    done = _helpers["pack_rows"](
        _ptr(rows), rows.shape[0], rows.shape[1], _ptr(class_of), vocab_size, num_words, _ptr(out)
    )
    if done == -2:
        raise MemoryError("no memory to pack a bitmask row")
    return out


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


class _Walk(threading.local):
    """The walk in progress on this thread: what the two callbacks work on."""

    automaton = None
    tables: list | None = None
    failure: BaseException | None = None
    out: list | None = None
    out_ptrs: tuple = ()
    chunks: list | None = None


_current = _Walk()


@FILL_ROW
def _fill_row(state: int):
    walk = _current
    try:
        table = walk.automaton.fill_row(state)
        if table is not walk.tables[-1]:  # reallocated
            walk.tables.append(table)  # kept alive until the walk returns
        return table.ctypes.data
    except BaseException as exc:  # re-raised after the walk
        walk.failure = exc
        return None


@FLUSH
def _flush(count: int) -> int:
    walk = _current
    walk.chunks.append(tuple(a[:count].copy() for a in walk.out))
    return 0


def walk(fn, trie, automaton, origins: np.ndarray):
    """``(origin position, string id, state)`` as ``int32`` arrays, from the C walk ``fn`` of
    ``trie`` (:class:`regexlm.index.rows.FlatTrie`) through ``automaton`` from ``origins``,
    grouped by origin position in ascending order."""
    origins = np.ascontiguousarray(origins, dtype=np.int32)
    byte_class = automaton.byte_classes
    if byte_class.dtype != np.uint8 or not byte_class.flags.c_contiguous:
        byte_class = np.ascontiguousarray(byte_class, dtype=np.uint8)
    table = automaton.transition_table()
    ctx = _current
    if ctx.out is None:
        ctx.out = [np.empty(FLUSH_CAPACITY, dtype=np.int32) for _ in range(3)]
        ctx.out_ptrs = tuple(_ptr(a) for a in ctx.out)
    ctx.automaton, ctx.tables, ctx.failure, ctx.chunks = automaton, [table], None, []
    try:
        total = fn(
            *trie.native_args,
            _ptr(byte_class),
            _ptr(table),
            table.shape[1],
            _ptr(origins),
            origins.size,
            *ctx.out_ptrs,
            FLUSH_CAPACITY,
            _fill_row,
            _flush,
        )
        if ctx.failure is not None:
            raise ctx.failure
        chunks = ctx.chunks
    finally:
        ctx.automaton, ctx.tables, ctx.failure, ctx.chunks = None, None, None, None
    if total == -2:
        raise MemoryError("the trie walk could not allocate its stack")
    if total < 0:
        raise RuntimeError("the automaton left a transition uncomputed after filling its row")
    if not chunks:
        empty = np.zeros(0, dtype=np.int32)
        return empty, empty, empty
    if len(chunks) == 1:
        return chunks[0]
    return tuple(np.concatenate([c[k] for c in chunks]) for k in range(3))
