"""The lazy DFA with its state cache in C (``lazy_dfa.c``).

The same automaton as :class:`~regexlm.automata.lazy.LazyDFA`, the reference, with the same
interface: a state is a set of NFA positions made when a walk first reaches it, its row of
transitions computed on first use, all within a byte budget and per-call limits. What moves
to C is what a token row repeats hundreds of times: taking the union of the positions' moves
per byte class, interning the resulting sets, and the table itself. A row that reaches three
hundred new states (``(\\w+\\s?){1,10}`` at a 262k vocabulary) then costs microseconds a state
instead of tens of them.

Python makes what is computed once per *NFA state* from the character sets: the UTF-8
automaton of its characters (one per distinct tuple of sets, sent to C once, as byte ranges).
The NFA goes to C whole when the automaton is made, as flat arrays numpy lays out without a
loop over the states in Python (each state's automaton, its transitions' targets and its
epsilon transitions); C finds the epsilon closures itself, each NFA state's once, when a row
first needs them, so a walk never stops to ask Python for anything. Once per set of usable bytes, each
NFA state's byte distance to a match (what :class:`~regexlm.automata.lazy.Distances` finds in
Python) is a shortest-path search in C over edge arrays that numpy lays out, so a pattern of
thousands of NFA states pays about a third of what Python's search costs (small NFAs keep the
Python search, quicker than laying out the arrays). Points inside a character are numbered in C
(their ids differ from the Python cache's, which only the keys show), and their moves and
distances are derived there.

A state's key (:meth:`NativeLazyDFA.key`, stable across cache clears) is the bytes of its
sorted positions. Calls into C hold the automaton's lock, so indexes on several threads can
share one automaton.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import accumulate, chain

import numpy as np

from regexlm import native
from regexlm.automata.char_classes import CharPartition
from regexlm.automata.dfa import SubsetConstruction, WholeInputs
from regexlm.automata.lazy import (
    DEFAULT_CACHE_BYTES,
    DEFAULT_STEP_BYTES,
    UNREACHABLE,
    Distances,
    costs_of_labels,
    usable_key,
)
from regexlm.automata.limits import DEFAULT_TIMEOUT, Deadline, too_many_walk_bytes
from regexlm.automata.nfa import CharNFA
from regexlm.errors import PatternTooComplexError

# result codes of lazy_dfa.c
OK, NO_MEMORY, OVER_BYTES, OVER_TIME = 0, -2, -3, -4
UNKNOWN = -5  # a distance not known yet
_UNREACHABLE = int(UNREACHABLE)
# Python's share of an automaton's memory (see nfa_bytes)
PYTHON_BASE_BYTES = 16 << 10
PYTHON_NFA_STATE_BYTES = 230
PYTHON_NFA_EDGE_BYTES = 100
# Python lets its copy of an NFA this large go once the distances are known (see release_nfa):
# about 250 KB and up; a smaller one is kept (letting it go costs a character partition, 0.1 ms)
RELEASE_NFA_FROM = 1024
# NFAs this large find their distances in C; smaller ones in Python, which is quicker than
# laying out the arrays for C below about a hundred states.
NATIVE_DISTANCES_FROM = 128


def functions():
    """The C functions of ``lazy_dfa.c`` with their signatures, or None without the library."""
    return native.declared("lazy_dfa", _declare)


def _declare(lib):
    p, i32, i64, dbl = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_double
    signatures = {
        "new": ([i32, i64, p], p),
        "free": ([p], None),
        "clear": ([p], i32),
        "add_automaton": ([p, i64, p, p, p, p, p], i32),
        "set_nfa": ([p, p, p, p, p, p], i32),
        "set_distances": ([p, p, p], i32),
        "intern": ([p, p, i64, p], i32),
        "fill": ([p, i32], i32),
        "table": ([p], p),
        "num_states": ([p], i64),
        "nbytes": ([p], i64),
        "kept_nbytes": ([p], i64),
        "accept": ([p, i32], i32),
        "set_limits": ([p, dbl, i64], None),
        "key": ([p, i32, p, i64], i64),
        "distance": ([p, i32], i32),
        "step": ([p, i64, p, p, p], i32),
        "describe": ([p, i64, p, p, p, p, p, i64], i64),
        "run": ([p, p, p, p, i64, p], i32),
        "nfa_distances": ([i64, i64, p, p, p, p, p], i32),
    }
    out = {}
    for name, (args, res) in signatures.items():
        fn = getattr(lib, f"regexlm_lazy_{name}")
        fn.argtypes, fn.restype = args, res
        out[name] = fn
    return out


def nfa_bytes(nfa: CharNFA) -> int:
    """An estimate of the bytes Python holds for an automaton of ``nfa``: the NFA's tuples and
    what the subset construction derives from them, a fixed 16 KB, 230 bytes an NFA state and
    100 a character transition (with its character set). Fitted with ``tracemalloc`` on
    patterns of 50 to 3,400 NFA states: within 15 % where the states' transitions hold sets of
    their own, and above the measure (by a third, for the 8-field JSON schema) where many share
    one. Character sets of the UTF-8 automata are shared between patterns (interned when
    parsed) and not counted here."""
    edges = sum(map(len, nfa.edges))
    return (
        PYTHON_BASE_BYTES + PYTHON_NFA_STATE_BYTES * nfa.num_states + PYTHON_NFA_EDGE_BYTES * edges
    )


def available() -> bool:
    """Whether :class:`NativeLazyDFA` can be used here."""
    return functions() is not None


_flat_automata: OrderedDict = OrderedDict()  # id -> (automaton, arrays), most recent last
FLAT_AUTOMATA_KEPT = 1024
_flat_lock = threading.Lock()


def _flat_automaton(auto):
    """``(number of states, address of off int64[U + 1], of lo int32[T], of hi int32[T], of next
    int32[T], the arrays)``: a UTF-8 automaton's transitions laid out for C (byte ranges),
    kept for the automata used most recently (the same classes recur across patterns)."""
    found = _flat_automata.get(id(auto))
    if found is not None and found[0] is auto:
        _flat_automata.move_to_end(id(auto))
        return found[1]
    rows = auto.trans
    off = np.zeros(len(rows) + 1, dtype=np.int64)
    off[1:] = np.cumsum([len(r) for r in rows])
    flat = np.array([t for r in rows for t in r], dtype=np.int32).reshape(-1, 3)
    columns = tuple(np.ascontiguousarray(flat[:, k]) for k in range(3))  # lo, hi, next
    arrays = (len(rows), *(native.address(a) for a in (off, *columns)), (off, *columns))
    with _flat_lock:
        _flat_automata[id(auto)] = (auto, arrays)
        while len(_flat_automata) > FLAT_AUTOMATA_KEPT:
            _flat_automata.popitem(last=False)
    return arrays


def _flat_lists(lists, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(off int64[n + 1], items int32[off[n]])``: ``n`` lists of ints laid end to end, without
    a loop over them in Python."""
    off = np.fromiter(accumulate(map(len, lists), initial=0), dtype=np.int64, count=n + 1)
    items = np.fromiter(chain.from_iterable(lists), dtype=np.int32, count=int(off[-1]))
    return off, items


class _Accept:
    """``automaton._accept[state]`` as :class:`~regexlm.automata.dfa.WholeInputs` reads it."""

    __slots__ = ("automaton",)

    def __init__(self, automaton: NativeLazyDFA):
        self.automaton = automaton

    def __getitem__(self, state: int) -> int:
        a = self.automaton
        return int(a._fn["accept"](a._engine, int(state)))


class NativeLazyDFA(WholeInputs):
    """A :class:`~regexlm.automata.lazy.LazyDFA` whose state cache is in C (see the module
    docstring). State 0 is dead."""

    def __init__(
        self,
        nfa: CharNFA,
        patterns: Sequence[str],
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        *,
        step_timeout: float | None = DEFAULT_TIMEOUT,
        step_bytes: int | None = DEFAULT_STEP_BYTES,
        rebuild_nfa: Callable[[], CharNFA] | None = None,
    ):
        fn = functions()
        if fn is None:
            raise RuntimeError("the C helpers are not available")
        self._fn = fn
        self._sc: SubsetConstruction | None = SubsetConstruction(nfa)
        # the same NFA again, for what needs Python's copy after it was let go (see release)
        self._rebuild_nfa = rebuild_nfa
        self._nfa_states = nfa.num_states
        self._start_set = sorted(self._sc.start_set)
        self._partition: CharPartition | None = None  # made on first use, kept
        self.patterns = tuple(patterns)
        self.cache_bytes = int(cache_bytes)
        self.step_timeout = step_timeout
        self.step_bytes = step_bytes
        self._deadline: Deadline | None = None
        self.byte_classes = self._sc.class_of.astype(np.uint8)
        self._byte_classes_at = native.address(self.byte_classes)  # [256], for the C calls
        self.byte_classes.setflags(write=False)
        self.num_byte_classes = self._sc.num_classes
        self._cls = self._sc.cls
        self.lock = threading.RLock()
        self.epoch = 0
        self.clears = 0
        self._distances_key: bytes | None = None
        self._auto_index: dict[int, int] = {}  # id of a UTF-8 automaton -> its index in C
        self._autos_alive: list = []
        self._python_bytes = nfa_bytes(nfa)
        match = np.ascontiguousarray(nfa.match, dtype=np.int32)
        self._engine = fn["new"](self.num_byte_classes, nfa.num_states, native.address(match))
        if not self._engine:
            raise MemoryError("no memory for a lazy DFA")
        self._give_nfa(self._sc)
        self._status = ctypes.c_int32(0)
        self._key_buf = np.empty(64, dtype=np.int32)
        self.start = self._intern_positions(self._start_set)

    @property
    def _subsets(self) -> SubsetConstruction:
        """Python's subset construction over the NFA, made again from the patterns where it
        was let go (:meth:`release_nfa`)."""
        sc = self._sc
        if sc is None:
            nfa = self._rebuild_nfa()
            if nfa.num_states != self._nfa_states:
                raise RuntimeError("the NFA made again differs from the automaton's")
            sc = self._sc = SubsetConstruction(nfa)
            self._python_bytes = nfa_bytes(nfa)
        return sc

    @property
    def _accept(self) -> _Accept:
        # made on each use: kept on the automaton, it would hold the automaton in a reference
        # cycle, and the C cache would wait for a collector's pass to be freed
        return _Accept(self)

    @property
    def native_engine(self) -> int:
        """The address of the C state cache (for the C trie walk, under :attr:`lock`)."""
        return self._engine

    def __del__(self):
        engine, self._engine = getattr(self, "_engine", None), None
        if engine:
            self._fn["free"](engine)

    # -- NFA states ---------------------------------------------------------------------------

    def _give_nfa(self, sc: SubsetConstruction) -> None:
        """Give C the whole NFA: its UTF-8 automata (those not sent yet), then each state's
        automaton, its transitions' targets and its epsilon transitions as flat arrays."""
        nfa, n = sc.nfa, sc.n
        placed = [self._automaton_index(a) for a in sc.distinct_autos]
        placed.append(-1)  # (slot -1: no automaton)
        automata = np.fromiter(map(placed.__getitem__, sc.auto_slots), dtype=np.int32, count=n)
        tgt_off, targets = _flat_lists(sc.targets, n)
        eps_off, eps_to = _flat_lists(nfa.eps, n)
        arrays = (automata, tgt_off, targets, eps_off, eps_to)
        code = self._fn["set_nfa"](self._engine, *(native.address(a) for a in arrays))
        self._check(code, "the NFA")

    def release_nfa(self) -> bool:
        """Let Python's copy of the NFA go (about a quarter of a kilobyte an NFA state, a
        megabyte for a JSON schema of eight fields) where it has :data:`RELEASE_NFA_FROM` states
        at least and the byte distances are known: C holds all it needs of it, and the
        automaton makes it again from its patterns only for distances over another set of
        usable bytes. For a moment that has time to spare (an index's exploration). Returns
        whether it went."""
        with self.lock:
            if self._sc is None:
                return True
            if (
                self._rebuild_nfa is None
                or self._distances_key is None
                or self._nfa_states < RELEASE_NFA_FROM
            ):
                self._sc.forget_closures()
                return False
            _ = self.char_partition  # made now (small, and asked for) while the NFA is here
            self._sc = None
            self._python_bytes = PYTHON_BASE_BYTES
            return True

    def _automaton_index(self, auto) -> int:
        """The index in C of UTF-8 automaton ``auto``, sent first if it was not."""
        index = self._auto_index.get(id(auto))
        return self._add_automaton(auto) if index is None else index

    def _add_automaton(self, auto) -> int:
        # (the arrays, kept alive by this frame, at the addresses given)
        num_states, off, lo, hi, nxt, _arrays = _flat_automaton(auto)
        index = self._fn["add_automaton"](
            self._engine, num_states, off, lo, hi, nxt, self._byte_classes_at
        )
        self._check(min(index, 0), "a UTF-8 automaton")
        self._auto_index[id(auto)] = index
        self._autos_alive.append(auto)  # ids stay unique while the automaton lives
        return index

    # -- the state cache ----------------------------------------------------------------------

    @property
    def num_states(self) -> int:
        """States in the cache now (dead state included)."""
        return int(self._fn["num_states"](self._engine))

    @property
    def char_partition(self) -> CharPartition:
        """The pattern's character classes (:mod:`regexlm.automata.char_classes`), made on
        first use."""
        sc = self._sc  # read before the partition: a release makes the partition first
        found = self._partition
        if found is None:
            found = self._partition = sc.char_partition()
        return found

    @property
    def nbytes(self) -> int:
        """Bytes held by the state cache (table, sets, hash): what the byte budget bounds."""
        return int(self._fn["nbytes"](self._engine))

    @property
    def kept_nbytes(self) -> int:
        """Bytes the automaton holds besides its state cache, which a clear keeps: in C, the
        NFA with the closures found, its UTF-8 automata with their distance tables, the id
        blocks of points inside characters and scratch buffers, as allocated; in Python, the NFA and
        what was derived from it (an estimate by count, see :func:`nfa_bytes`)."""
        return int(self._fn["kept_nbytes"](self._engine)) + self._python_bytes

    def _intern_positions(self, positions) -> int:
        arr = np.ascontiguousarray(positions, dtype=np.int32)
        with self.lock:
            sid = self._fn["intern"](
                self._engine, native.address(arr), arr.size, ctypes.byref(self._status)
            )
            self._check(self._status.value, "a new DFA state")
        return int(sid)

    def intern(self, key: bytes) -> int:
        """The id of the state whose key (see :meth:`key`) is ``key``, made if new."""
        return self._intern_positions(np.frombuffer(key, dtype=np.int32))

    def key(self, state: int) -> bytes:
        """The sorted positions of ``state`` as bytes (stable across cache clears)."""
        return self._describe(np.array([state]))[0][0]

    def clear(self) -> None:
        """Forget every state; ids change (see :attr:`epoch`), the start is made again."""
        with self.lock:
            self._check(self._fn["clear"](self._engine), "clearing the cache")
            self.epoch += 1
            self.clears += 1
            self.start = self._intern_positions(self._start_set)

    def needs_clear(self) -> bool:
        """Whether the cache is over its budget (the caller clears between walks)."""
        return self.nbytes > self.cache_bytes

    # -- limits -------------------------------------------------------------------------------

    @contextmanager
    def time_limit(self, activity: str) -> Iterator[None]:
        """Bound the states made inside the block by ``step_timeout`` CPU seconds and
        ``step_bytes`` bytes, as :meth:`regexlm.automata.lazy.LazyDFA.time_limit`."""
        if self._deadline is not None:
            yield
            return
        with self.lock:
            self._deadline = Deadline(self.step_timeout, activity)
            at = self._deadline.at or 0.0
            limit = 0 if self.step_bytes is None else self.nbytes + self.step_bytes
            self._fn["set_limits"](self._engine, at, limit)
            try:
                yield
            finally:
                self._deadline = None
                self._fn["set_limits"](self._engine, 0.0, 0)

    def _check(self, code: int, stage: str) -> None:
        """Raise what a C result code means."""
        if code == OK:
            return
        if code == OVER_TIME and self._deadline is not None:
            self._deadline.check(stage)
            raise PatternTooComplexError(
                f"{self._deadline.activity} took longer than the time limit of "
                f"{self._deadline.timeout:g} s of CPU time (stopped during {stage}); simplify "
                "the pattern or raise timeout",
                limit="timeout",
            )
        if code == OVER_BYTES:
            raise too_many_walk_bytes(self.step_bytes or 0)
        if code == NO_MEMORY:
            raise MemoryError(f"no memory for {stage} of a lazy DFA")
        raise RuntimeError(f"lazy DFA failed with code {code} during {stage}")

    # -- transitions --------------------------------------------------------------------------

    def _filling(self, call) -> None:
        """Run ``call() -> code`` (a C call that may fill rows) and raise what its code
        means."""
        with self.lock:
            self._check(call(), "the transitions of a DFA state")

    def fill(self, state: int) -> None:
        """Compute ``state``'s row if it is not known yet."""
        self._filling(lambda: self._fn["fill"](self._engine, state))

    def row(self, state: int) -> np.ndarray:
        """``int32[K]`` the state after each byte class (a copy)."""
        k = self.num_byte_classes
        with self.lock:
            self.fill(state)
            base = self._fn["table"](self._engine) + 4 * k * int(state)
            return np.frombuffer((ctypes.c_int32 * k).from_address(base), dtype=np.int32).copy()

    def step(self, states: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """``int64[n]``: the state after byte class ``classes[i]`` from ``states[i]``, rows
        built as needed (the cache is never cleared here)."""
        states = np.ascontiguousarray(states, dtype=np.int64)
        classes = np.ascontiguousarray(classes, dtype=np.int64)
        out = np.empty(states.size, dtype=np.int64)
        args = (states.size, native.address(states), native.address(classes), native.address(out))
        self._filling(lambda: self._fn["step"](self._engine, *args))
        return out

    def next_class(self, state: int, byte_class: int) -> int:
        return int(self.step(np.array([state]), np.array([byte_class]))[0])

    def next(self, state: int, byte: int) -> int:
        return self.next_class(state, self._cls[byte])

    def run(self, data: bytes, state: int | None = None) -> int:
        data = bytes(data)
        s = ctypes.c_int32(self.start if state is None else state)
        done = ctypes.c_int64(0)
        args = (
            ctypes.byref(s),
            native.address(self.byte_classes),
            data,
            len(data),
            ctypes.byref(done),
        )
        self._filling(lambda: self._fn["run"](self._engine, *args))
        return int(s.value)

    # -- distances ------------------------------------------------------------------------

    def _use_distances(self, usable: np.ndarray | None) -> None:
        """Give C the NFA states' distances over ``usable`` bytes, once per set of bytes."""
        ok = np.ones(256, dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
        key = ok.tobytes()
        if self._distances_key == key:
            return
        if self._nfa_states >= NATIVE_DISTANCES_FROM:
            nfa_dist = self._nfa_distances(ok)
        else:
            nfa_dist = np.array(Distances(self._subsets, ok).state, dtype=np.int64)
            nfa_dist = np.minimum(nfa_dist, UNREACHABLE).astype(np.int32)
        usable_class = np.zeros(self.num_byte_classes, dtype=np.uint8)
        usable_class[self.byte_classes[ok]] = 1
        self._fn["set_distances"](
            self._engine, native.address(nfa_dist), native.address(usable_class)
        )
        self._distances_key = key

    def _nfa_distances(self, ok: np.ndarray) -> np.ndarray:
        """``int32[n]``: every NFA state's fewest ``ok`` bytes to a match, what
        :class:`~regexlm.automata.lazy.Distances` finds in Python, from edge arrays made
        without a loop over the states in Python and a shortest-path search in C."""
        sc = self._subsets
        nfa = sc.nfa
        n = nfa.num_states
        eps_count = np.fromiter(map(len, nfa.eps), dtype=np.int64, count=n)
        eps_to = np.fromiter(chain.from_iterable(nfa.eps), dtype=np.int32, count=eps_count.sum())
        eps_from = np.repeat(np.arange(n, dtype=np.int32), eps_count)
        # Characters: the j-th transition of state q costs the j-th label cost of q's automaton.
        chr_count = np.fromiter(map(len, sc.targets), dtype=np.int64, count=n)
        total = int(chr_count.sum())
        chr_to = np.fromiter(chain.from_iterable(sc.targets), dtype=np.int32, count=total)
        chr_from = np.repeat(np.arange(n, dtype=np.int32), chr_count)
        ids = np.fromiter(map(id, sc.autos), dtype=np.int64, count=n)
        ids[chr_count == 0] = -1
        unique, first, which = np.unique(ids, return_index=True, return_inverse=True)
        key, below = usable_key(ok)
        costs = [
            costs_of_labels(sc.autos[q], key, below) if unique[k] != -1 else []
            for k, q in enumerate(first.tolist())
        ]
        label_off = np.zeros(len(costs) + 1, dtype=np.int64)
        np.cumsum([len(c) for c in costs], out=label_off[1:])
        flat_costs = np.fromiter(
            chain.from_iterable(costs), dtype=np.int64, count=int(label_off[-1])
        )
        starts = np.cumsum(chr_count) - chr_count  # each state's first transition
        entry = np.arange(total, dtype=np.int64) - np.repeat(starts, chr_count)
        chr_cost = flat_costs[np.repeat(label_off[which.reshape(-1)], chr_count) + entry]
        usable = chr_cost < UNREACHABLE
        src = np.concatenate([eps_from, chr_from[usable]])
        dst = np.concatenate([eps_to, chr_to[usable]])
        cost = np.concatenate([np.zeros(eps_to.size, np.int32), chr_cost[usable].astype(np.int32)])
        is_match = (np.asarray(nfa.match, dtype=np.int64) >= 0).astype(np.uint8)
        dist = np.empty(n, dtype=np.int32)
        code = self._fn["nfa_distances"](
            n,
            src.size,
            *(native.address(a) for a in (src, dst, cost, is_match, dist)),
        )
        self._check(code, "byte distances")
        return dist

    def byte_distance(self, state: int, usable: np.ndarray | None = None) -> int:
        """Fewest bytes from ``state`` to a match (:data:`UNREACHABLE` if none), ``usable``
        as in :meth:`regexlm.automata.lazy.LazyDFA.byte_distance`."""
        with self.lock:
            self._use_distances(usable)
            found = self._fn["distance"](self._engine, state)
        if found < 0:
            self._check(found, "byte distances")
        return int(found)

    def describe(
        self, states: np.ndarray, usable: np.ndarray | None = None, *, distances: bool = True
    ):
        """``(keys, match int32[n], distance int32[n])`` of many states at once: what
        :meth:`key`, :meth:`match_index` and :meth:`byte_distance` give one at a time.
        ``distances=False`` leaves the distances out where they are not known yet (they are
        :data:`UNKNOWN` then): finding them costs a search over the whole NFA, which a caller
        that knows them all finite (:meth:`spells_every_label`) can leave for later."""
        with self.lock:
            if distances:
                self._use_distances(usable)
            return self._describe(states)

    def spells_every_label(self, usable: np.ndarray | None) -> bool:
        """Whether ``usable`` bytes (``bool[256]``, None: all) spell some character of every
        character transition of the NFA, each byte alone, and every UTF-8 continuation byte
        is usable. Then every state but the dead one has a finite byte distance (the NFA is
        trimmed: each of its states reaches a match, and a point inside a character finishes
        it with continuation bytes), which :meth:`describe` can leave for later."""
        if usable is None:
            return True
        ok = np.asarray(usable, dtype=bool)
        if not ok[0x80:0xC0].all():
            return False
        key, below = usable_key(ok)
        with self.lock:
            autos = self._subsets.distinct_autos
            return all(_UNREACHABLE not in costs_of_labels(auto, key, below) for auto in autos)

    def _describe(self, states) -> tuple[list[bytes], np.ndarray, np.ndarray]:
        """Keys, match indexes and distances (:data:`UNKNOWN` before any usable set) of
        ``states``, from one C call."""
        states = np.ascontiguousarray(states, dtype=np.int64)
        n = states.size
        match = np.empty(n, dtype=np.int32)
        dist = np.empty(n, dtype=np.int32)
        lengths = np.empty(n, dtype=np.int64)
        with self.lock:
            while True:
                total = self._fn["describe"](
                    self._engine,
                    n,
                    native.address(states),
                    native.address(match),
                    native.address(dist),
                    native.address(lengths),
                    native.address(self._key_buf),
                    self._key_buf.size,
                )
                if total <= self._key_buf.size:
                    break
                self._key_buf = np.empty(2 * total, dtype=np.int32)
            flat = self._key_buf[:total].tobytes()
        if (dist == NO_MEMORY).any():
            self._check(NO_MEMORY, "byte distances")
        ends = (4 * np.cumsum(lengths)).tolist()
        keys = [flat[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        return keys, match, dist

    def __repr__(self) -> str:
        return (
            f"NativeLazyDFA(patterns={self.patterns!r}, cached_states={self.num_states}, "
            f"num_byte_classes={self.num_byte_classes})"
        )
