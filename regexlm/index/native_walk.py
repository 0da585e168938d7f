"""The trie walk in C (``trie_walk.c``, part of the library :mod:`regexlm.native` builds).

(The same source holds the check whether a new row splits any token class, the hot part of
:meth:`regexlm.index.token_classes.TokenClasses.refine` on rows that allow most tokens, and the
packing of bitmask rows.)

The numpy walk of :mod:`regexlm.index.rows` goes level by level, a few array operations per
depth whatever the batch; that is fast when a walk is narrow and wasteful when it covers most of
the vocabulary (a row of ``.{0,500}`` or ``\\w+`` visits every node of the trie). The C walk
visits the same nodes depth first, a few nanoseconds each. Through the C lazy DFA
(:mod:`regexlm.automata.native_lazy`) it computes missing rows of transitions itself and calls
back into Python only for a position whose moves are not known yet; through any other
automaton it asks the automaton for each missing row (a callback to ``fill_row``).

Where the library is off or cannot be built (:func:`regexlm.native.library`), :func:`library`
returns None and the numpy walk is used instead (it gives the same rows; the tests compare the
two).

A walk visits the trie once per origin state in preorder and jumps over every subtree where
the automaton dies (see ``trie_walk.c``). Through the byte trie it also hands over whole every
large subtree its origin's chain reads alike (every character of it leads a state of the chain
to the next one, as inside a JSON string or free text): its strings are written out with their
places on the chain, without stepping through its nodes. What that needs of the trie is made
once per vocabulary (:func:`trie_summary`).
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from regexlm import native

FLUSH_CAPACITY = 1 << 16  # triples per output buffer, at least
# at most: a buffer that holds a whole row of the vocabulary lets the C walk skip handing over
# the triples of a row that splits no token class (3 x 4 bytes a triple, per walking thread)
MAX_FLUSH_CAPACITY = 1 << 19

FILL_ROW = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int32)
FLUSH = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64)


def enabled() -> bool:
    """Whether the C walk may be used (``REGEXLM_NATIVE=0`` turns it off)."""
    return native.enabled()


def library():
    """The C walk, or None where the library is off or cannot be built."""
    return native.declared("trie_walk", _load)


def _load(lib):
    fn = lib.regexlm_walk_rows
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    fn.argtypes = [p, p, p, p, i64, i32, p, p, i64, p, i64, p, p, p, i64, FILL_ROW, FLUSH, p, p]
    fn.restype = i64
    summary = lib.regexlm_trie_summary
    summary.argtypes = [p, p, p, p, i64, i32, i64, p, p, p, p, p, p, p, p, p]
    summary.restype = i64
    _helpers["trie_summary"] = summary
    pack = lib.regexlm_pack_rows
    pack.argtypes = [p, i64, i64, p, i32, i64, i64, p, p, p, p]
    pack.restype = i32
    _helpers["pack_rows"] = pack
    refine = lib.regexlm_refine_classes
    refine.argtypes = [p, i32, i64, p, i64, p, p, i64, p, p, i64, p, i32, p, p, p]
    refine.restype = i64
    _helpers["refine_classes"] = refine
    simd = lib.regexlm_pack_simd
    simd.restype, simd.argtypes = ctypes.c_int32, [ctypes.c_int32]
    _helpers["pack_simd"] = simd
    members = lib.regexlm_small_class_members
    members.argtypes = [p, i32, i64, i64, i64, p, p, p, p]
    members.restype = i64
    _helpers["small_class_members"] = members
    lazy = lib.regexlm_walk_rows_lazy
    lazy.argtypes = [
        *(p, p, p, p, i64, i32, p, p, i64, p, i64, p, p, p, i64, FLUSH),
        *(p, p, i32, p, i64, p, p, p),
        *(p, p, p, p),
        *(p, p),
    ]
    lazy.restype = i64
    _helpers["walk_rows_lazy"] = lazy
    return fn


_helpers: dict = {}


def class_table(class_of: np.ndarray) -> tuple[np.ndarray, int]:
    """``class_of`` as the C code reads it, and whether it is wide: a contiguous ``uint16``
    array (0) as kept while classes fit, or ``int32`` (1); any other dtype becomes ``int32``."""
    if class_of.dtype == np.uint16 and class_of.flags.c_contiguous:
        return class_of, 0
    return np.ascontiguousarray(class_of, dtype=np.int32), 1


def refine_classes(classes, tokens: np.ndarray, targets: np.ndarray) -> tuple | None:
    """One row's refinement of ``classes`` (a :class:`regexlm.index.token_classes.TokenClasses`)
    in C (``token_classes.c``): ``(class_of, size, old_of_new, row)``, the first three None
    when no class splits; None where the C code is not available."""
    if library() is None or not classes.class_of.flags.c_contiguous:
        return None
    if classes.class_of.dtype not in (np.uint16, np.int32):
        return None
    tokens = np.ascontiguousarray(tokens, dtype=np.int32)  # [T] token ids
    targets = np.ascontiguousarray(targets, dtype=np.int64)  # [T]
    num, room = classes.num_classes, classes.num_classes + tokens.size
    shadows = np.ascontiguousarray(classes.shadows, dtype=np.int64)
    shadowed = np.ascontiguousarray(classes.shadowed, dtype=np.int64)
    wide = int(classes.class_of.dtype == np.int32)
    size = np.empty(room, dtype=np.int64)
    old_of_new = np.empty(room, dtype=np.int64)
    row = np.empty(room, dtype=np.int32)
    for out_wide in (wide, 1):  # uint16 while the classes fit; -3: they no longer do
        class_of = np.empty(classes.class_of.size, dtype=np.int32 if out_wide else np.uint16)
        found = _helpers["refine_classes"](
            _ptr(classes.class_of), wide, classes.class_of.size, _ptr(classes.size), num,
            _ptr(tokens), _ptr(targets), tokens.size, _ptr(shadows), _ptr(shadowed),
            shadows.size, _ptr(class_of), out_wide, _ptr(size), _ptr(old_of_new), _ptr(row),
        )  # fmt: skip
        if found != -3:
            break
    if found == -2:
        raise MemoryError("no memory to refine the token classes")
    if found == num:
        return None, None, None, row[:num].copy()
    return class_of, size[:found].copy(), old_of_new[:found].copy(), row[:found].copy()


def pack_rows(
    rows: np.ndarray, class_of: np.ndarray, vocab_size: int, members: tuple | None = None
) -> np.ndarray | None:
    """``int32[n, ceil(V/32)]`` allowed-token bitmasks of ``rows int32[n, C]`` (a token is
    allowed where its class's entry is not -1), packed in C; None where the C code is not
    available. ``members`` (from :func:`small_class_members` for the same ``class_of``) lets a
    row that allows only small classes, or forbids only small classes, set or clear its
    tokens' bits alone. ``TokenIndex._pack_host`` is the numpy reference."""
    if library() is None:
        return None
    return RowPacker(class_of, vocab_size, members).pack(rows)


def pack_simd(enabled: bool) -> bool:
    """Let :func:`pack_rows` use the CPU's vector gathers (AVX2) where it has them, or not (the
    portable loop); True if they are used now. For tests, which check both ways."""
    if library() is None:
        return False
    return bool(_helpers["pack_simd"](int(enabled)))


class RowPacker:
    """:func:`pack_rows` for one ``class_of`` (and its small classes' tokens), with the tables'
    addresses taken once: a mask packed on demand pays the C call, not the look-ups."""

    def __init__(self, class_of: np.ndarray, vocab_size: int, members: tuple | None = None):
        self.class_of, wide = class_table(class_of)  # [V]
        self.members = members
        self.vocab_size = vocab_size
        self.num_words = (vocab_size + 31) // 32
        extra = (None, None, None) if members is None else tuple(_ptr(a) for a in members)
        self._tables = (_ptr(self.class_of), wide, vocab_size, self.num_words, *extra)

    def pack(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.int32)  # [n, C]
        out = np.empty((rows.shape[0], self.num_words), dtype=np.int32)  # [n, W]
        class_of, wide, vocab_size, num_words, *extra = self._tables
        done = _helpers["pack_rows"](
            _ptr(rows),
            rows.shape[0],
            rows.shape[1],
            class_of,
            wide,
            vocab_size,
            num_words,
            _ptr(out),
            *extra,
        )
        if done == -2:
            raise MemoryError("no memory to pack a bitmask row")
        return out


def small_class_members(
    class_of: np.ndarray, num_classes: int, cap: int, counts: np.ndarray | None = None
) -> tuple | None:
    """``(member_start int64[C + 1], members int32[<= cap], small int8[C])``: the token ids of
    the smallest classes, chosen smallest first while they add up to at most ``cap`` tokens,
    grouped by class (see ``trie_walk.c``); None where the C code is not available.
    ``counts int64[C]``, each class's number of tokens where the caller knows it, spares a
    pass over ``class_of``."""
    if library() is None:
        return None
    class_of, wide = class_table(class_of)
    if counts is not None:
        counts = np.ascontiguousarray(counts, dtype=np.int64)
        if counts.shape != (num_classes,):
            raise ValueError(f"counts has shape {counts.shape}; it must be ({num_classes},)")
    start = np.empty(num_classes + 1, dtype=np.int64)
    members = np.empty(max(1, cap), dtype=np.int32)
    small = np.empty(max(1, num_classes), dtype=np.int8)
    count = _helpers["small_class_members"](
        _ptr(class_of),
        wide,
        class_of.size,
        num_classes,
        cap,
        None if counts is None else _ptr(counts),
        _ptr(start),
        _ptr(members),
        _ptr(small),
    )
    if count < 0:
        raise MemoryError("no memory to list the tokens of the small classes")
    return start, members[:count].copy(), small


_ptr = native.address

# A subtree of at least this many nodes gets a summary (see trie_walk.c's TrieSummary): a walk
# may hand it over whole. Smaller ones are cheaper to walk than to check.
WHOLE_SUBTREE_NODES = 64


class _TrieSummary(ctypes.Structure):
    _fields_ = [
        ("min_size", ctypes.c_int64),
        ("big_bits", ctypes.c_void_p),
        ("big_rank", ctypes.c_void_p),
        ("ascii", ctypes.c_void_p),
        ("flags", ctypes.c_void_p),
        ("first", ctypes.c_void_p),
        ("count", ctypes.c_void_p),
        ("before", ctypes.c_void_p),
        ("span", ctypes.c_void_p),
        ("string_chars", ctypes.c_void_p),
    ]


_summary_lock = threading.Lock()


def trie_summary(trie):
    """The byte trie's summary for whole subtrees (``trie_walk.c``): per subtree of at least
    :data:`WHOLE_SUBTREE_NODES` nodes, the ASCII bytes it reads, whether it reads others,
    whether it is whole (well-formed UTF-8 after a character boundary, every token ending on
    one, its strings one run of ids) and how many characters its strings read; and each
    string's characters. Made once per trie (about 1 % of the trie's bytes at
    262,144 tokens); None where the C code is not available."""
    found = trie.__dict__.get("_whole_summary")
    if found is not None:
        return found
    if library() is None:
        return None
    with _summary_lock:
        found = trie.__dict__.get("_whole_summary")
        if found is not None:
            return found
        n = trie.num_nodes
        big = int(np.count_nonzero(trie.size >= WHOLE_SUBTREE_NODES))
        words = (n + 63) // 64
        arrays = {
            "big_bits": np.zeros(words, dtype=np.uint64),
            "big_rank": np.zeros(words, dtype=np.int32),
            "ascii": np.zeros(2 * max(big, 1), dtype=np.uint64),
            "flags": np.zeros(max(big, 1), dtype=np.uint8),
            "first": np.zeros(max(big, 1), dtype=np.int32),
            "count": np.zeros(max(big, 1), dtype=np.int32),
            "before": np.zeros(max(big, 1), dtype=np.uint16),
            "span": np.zeros(max(big, 1), dtype=np.uint16),
            "string_chars": np.zeros(max(trie.num_strings, 1), dtype=np.uint16),
        }
        names = tuple(name for name, _ in _TrieSummary._fields_[1:])
        made = _helpers["trie_summary"](
            *trie.native_args, WHOLE_SUBTREE_NODES, *(_ptr(arrays[k]) for k in names)
        )
        if made < 0:
            raise MemoryError("no memory to summarize the vocabulary trie")
        if made != big:
            raise RuntimeError(f"the trie summary found {made} large subtrees, not {big}")
        struct = _TrieSummary(WHOLE_SUBTREE_NODES, *(_ptr(arrays[k]) for k in names))
        found = (ctypes.pointer(struct), arrays)  # the arrays live as long as the pointer
        trie.__dict__["_whole_summary"] = found
    return found


class _Walk(threading.local):
    """The walk in progress on this thread: what the two callbacks work on."""

    automaton = None
    tables: list | None = None
    failure: BaseException | None = None
    out: list | None = None
    out_ptrs: tuple = ()
    chunks: list | None = None
    whole = 0  # subtrees the last walk on this thread handed over whole


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


def walk(
    fn,
    trie,
    automaton,
    origins: np.ndarray,
    classes=None,
    whole_subtrees: bool = True,
):
    """``(origin position, string id, state)`` as ``int32`` arrays, from the C walk ``fn`` of
    ``trie`` (:class:`regexlm.index.rows.FlatTrie`) through ``automaton`` from ``origins``,
    grouped by origin position in ascending order.

    ``classes`` (``(class_of [V], size int64[C])``, only through the C lazy DFA) adds the
    check of ``trie_walk.c`` that spares most rows the class refinement: then the result has a
    fourth item, ``(class_rows int32[O, C], keeps bool[O], count)``, the DFA state of each class
    per origin where ``keeps`` (no class splits), and the number of strings found alive; when
    every origin keeps its classes the triples may be left out (empty).

    ``trie`` may be a :class:`regexlm.index.class_trie.ClassTrie` (only with ``classes``): then
    the triples name its groups of strings, not strings.

    ``whole_subtrees``: a large subtree of a byte trie that its origin's chain reads alike
    (every character of it leads a state of the chain to the next, see ``trie_walk.c``) is
    handed over without stepping through it; False steps through every node (the tests
    compare the two). With ``classes`` and one origin, their strings are checked and counted
    without being written, and written at the end only where the row splits a class (a row
    that keeps its classes, as most do, costs about a third less)."""
    origins = np.ascontiguousarray(origins, dtype=np.int32)
    byte_class = automaton.byte_classes
    if byte_class.dtype != np.uint8 or not byte_class.flags.c_contiguous:
        byte_class = np.ascontiguousarray(byte_class, dtype=np.uint8)
    ctx = _current
    want = FLUSH_CAPACITY
    if classes is not None:
        want = min(max(want, trie.num_strings), MAX_FLUSH_CAPACITY)
    if ctx.out is None or ctx.out[0].size < want:
        ctx.out = [np.empty(want, dtype=np.int32) for _ in range(3)]
        ctx.out_ptrs = tuple(_ptr(a) for a in ctx.out)
    capacity = ctx.out[0].size
    engine = getattr(automaton, "native_engine", None)
    units = getattr(trie, "unit_args", None)
    if units is not None and (engine is None or classes is None):
        raise ValueError("a class trie is walked through the C lazy DFA with the class check")
    found = ctypes.c_int64(0)
    whole = ctypes.c_int64(0)
    summary = trie_summary(trie) if whole_subtrees and units is None else None
    summary_ptr = summary[0] if summary is not None else None
    checked = None
    if engine is not None:  # the C lazy DFA: rows are filled in C
        check: tuple = (None, None, 0, None, 0, None, None, None)
        if classes is not None:
            class_of, size = classes
            class_of, wide = class_table(class_of)
            size = np.ascontiguousarray(size, dtype=np.int64)
            class_rows = np.empty((origins.size, size.size), dtype=np.int32)
            named = np.empty((origins.size, size.size), dtype=np.int64)
            keeps = np.empty(origins.size, dtype=np.int8)
            first = np.ascontiguousarray(trie.first_token, dtype=np.int32)  # [strings]
            check = (
                *(_ptr(first), _ptr(class_of), wide, _ptr(size), size.size),
                *(_ptr(class_rows), _ptr(named), _ptr(keeps)),
            )
        with automaton.lock:
            ctx.automaton, ctx.failure, ctx.chunks = automaton, None, []
            try:
                total = _helpers["walk_rows_lazy"](
                    *trie.native_args,
                    _ptr(byte_class),
                    engine,
                    automaton.num_byte_classes,
                    _ptr(origins),
                    origins.size,
                    *ctx.out_ptrs,
                    capacity,
                    _flush,
                    *check,
                    *(units if units is not None else (None, None, None)),
                    ctypes.byref(found),
                    summary_ptr,
                    ctypes.byref(whole),
                )
                if ctx.failure is not None:
                    raise ctx.failure
                if total < -1:
                    automaton._check(int(total), "the transitions of a DFA state")
                chunks = ctx.chunks
            finally:
                ctx.automaton, ctx.failure, ctx.chunks = None, None, None
        if classes is not None:
            checked = (class_rows, keeps.astype(bool), int(found.value))
    else:
        table = automaton.transition_table()
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
                capacity,
                _fill_row,
                _flush,
                summary_ptr,
                ctypes.byref(whole),
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
    ctx.whole = int(whole.value)
    if not chunks:
        empty = np.zeros(0, dtype=np.int32)
        triples = (empty, empty, empty)
    elif len(chunks) == 1:
        triples = chunks[0]
    else:
        triples = tuple(np.concatenate([c[k] for c in chunks]) for k in range(3))
    return triples if checked is None else (*triples, checked)
