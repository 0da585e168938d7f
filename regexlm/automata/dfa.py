"""Subset construction over byte classes, and the :class:`DFA` every later layer reads.

**Byte classes.** Two bytes that no transition of the automaton tells apart can share one column
of the transition table. The classes used during construction are the intervals between the
boundaries of every byte range in every UTF-8 automaton the NFA refers to: a handful for ASCII
patterns, a few dozen for Unicode classes, never 256. After minimization the final classes are
recomputed as the distinct columns of the whole table (bytes whose columns are equal merge even
when they are not adjacent).

**Subset construction.** A DFA state is the set of NFA positions the input can be in. A
position is either an NFA state at a character boundary, or a point inside a character: a
(UTF-8 automaton, its state, NFA states to enter once the character is complete) triple. All the
character transitions of one NFA state share one UTF-8 automaton whose final transitions say which
transition was taken (see ``utf8.utf8_partition_automaton``), so the sets an assertion splits a
class into share their states inside a character. The byte level is never built as an NFA;
positions inside characters are created on demand and shared by every NFA state with the same
sets and targets. Each position's moves are computed
once, as ``(first class, last class, target positions)``; a DFA state's row is the union of its
positions' moves, per class.

The empty set is the dead state and gets id 0. The construction stops at ``max_states``.

**The DFA.** :class:`DFA` holds the contract's arrays (see ``ARCHITECTURE.md``): ``table``
``int32[num_states, num_byte_classes]``, ``byte_classes`` ``uint8[256]``, ``accept``
``int32[num_states]`` (lowest matching pattern index when the input ends here, or -1). Every
state other than the dead state can reach a match.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from regexlm.automata.char_classes import CharPartition, char_partition
from regexlm.automata.limits import Deadline, Limits, too_many_dfa_states
from regexlm.automata.nfa import CharNFA
from regexlm.automata.utf8 import utf8_partition_automaton

DEAD = 0


def _closures(nfa: CharNFA):
    """closure(q): the frozenset of important NFA states reachable from ``q`` by epsilons.

    Important states are those with character transitions or a match.
    """
    eps, edges, match = nfa.eps, nfa.edges, nfa.match
    cache: dict[int, frozenset] = {}

    def closure(q: int) -> frozenset:
        got = cache.get(q)
        if got is not None:
            return got
        seen = {q}
        stack = [q]
        out = []
        while stack:
            s = stack.pop()
            if edges[s] or match[s] >= 0:
                out.append(s)
            for t in eps[s]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        got = cache[q] = frozenset(out)
        return got

    return closure


class SubsetConstruction:
    """The moves of NFA positions and the rows of position sets, for one NFA.

    Shared by the eager construction (:func:`determinize`, every state at once) and the lazy
    automaton (:mod:`regexlm.automata.lazy`, a state when a walk first needs it). A DFA state
    is a frozenset of positions; :meth:`row` gives the target set per construction byte class,
    through a ``state_id`` callback that interns sets, so both users number states their way.
    """

    def __init__(self, nfa: CharNFA):
        n = self.n = nfa.num_states
        self.nfa = nfa
        self.closure = _closures(nfa)
        # The UTF-8 automaton of the character transitions of every NFA state (one automaton for
        # all of a state's sets, labelled by transition), and byte classes from all their bounds.
        autos: list = [None] * n
        slots = [-1] * n  # each state's automaton as its place in distinct_autos, -1 none
        targets: list[tuple[int, ...]] = [()] * n
        distinct: list = []
        bounds = {0, 256}
        # Counted repeats copy one set into many states: look each tuple of sets up once, by
        # the identity of its sets (the NFA holds them alive), not by hashing their ranges.
        seen: dict[tuple[int, ...], int] = {}
        for q, row in enumerate(nfa.edges):
            if not row:
                continue
            if len(row) == 1:  # most states: one transition
                ((chars, t),) = row
                key: tuple[int, ...] = (id(chars),)
                targets[q] = (t,)
            else:
                key = tuple([id(chars) for chars, _ in row])
                targets[q] = tuple([t for _, t in row])
            slot = seen.get(key)
            if slot is None:
                slot = seen[key] = len(distinct)
                a = utf8_partition_automaton(tuple([c for c, _ in row]))
                distinct.append(a)
                bounds |= a.boundaries
            autos[q] = distinct[slot]
            slots[q] = slot
        self.autos, self.targets, self.auto_slots = autos, targets, slots
        # each UTF-8 automaton once (an automaton shared by equal sets of other ids may repeat)
        self.distinct_autos = distinct
        cuts = sorted(bounds)
        class_of = np.repeat(np.arange(len(cuts) - 1, dtype=np.int64), np.diff(cuts))  # [256]
        self.class_of = class_of
        self.num_classes = len(cuts) - 1
        self.cls = class_of.tolist()
        # Positions: ids < n are NFA states; ids >= n are points inside a character.
        self.mid_ids: dict[tuple, int] = {}
        self.mid_info: list[tuple] = []  # id - n -> (automaton, utf8 state, NFA targets by label)
        self.mid_sets: list[frozenset] = []  # id - n -> the interned singleton {id}
        self.moves_cache: dict[int, list] = {}
        self.dense = self.num_classes <= _DENSE_MAX_CLASSES
        self.dense_cache: dict[int, list] = {}
        self.union_memo: dict[tuple[int, ...], int] = {}
        self.start_set = self.closure(nfa.start)

    def forget_closures(self) -> None:
        """Let go of the closures found so far (they are found again where asked for): for a
        user that has what it needs from them."""
        self.closure = _closures(self.nfa)

    def char_partition(self) -> CharPartition:
        """The NFA's character classes (:mod:`regexlm.automata.char_classes`), made on first
        use and kept."""
        found = getattr(self, "_char_partition", None)
        if found is None:
            found = self._char_partition = char_partition(self.nfa)
        return found

    def mid(self, auto, u: int, tgts: tuple[int, ...]) -> frozenset:
        key = (id(auto), u, tgts)
        pid = self.mid_ids.get(key)
        if pid is None:
            pid = self.mid_ids[key] = self.n + len(self.mid_info)
            self.mid_info.append((auto, u, tgts))
            self.mid_sets.append(frozenset((pid,)))
        return self.mid_sets[pid - self.n]

    def position(self, p: int):
        """``(utf8 automaton or None, its state, NFA targets by label)`` of position ``p``."""
        if p < self.n:
            return self.autos[p], 0, self.targets[p]
        return self.mid_info[p - self.n]

    def moves(self, p: int) -> list:
        """[(first class, last class, target positions)] for position ``p``."""
        mv = self.moves_cache.get(p)
        if mv is None:
            auto, u, tgts = self.position(p)
            mv = []
            if auto is not None:
                cls, closure = self.cls, self.closure
                for lo, hi, nxt in auto.trans[u]:
                    # nxt < 0: a character of set -1-nxt is complete.
                    tgt = closure(tgts[-1 - nxt]) if nxt < 0 else self.mid(auto, nxt, tgts)
                    mv.append((cls[lo], cls[hi], tgt))
            self.moves_cache[p] = mv
        return mv

    def dense_moves(self, p: int) -> list:
        """[(class, target positions)] for position ``p``, one entry per class."""
        dm = self.dense_cache.get(p)
        if dm is None:
            dm = self.dense_cache[p] = [
                (c, tgt) for clo, chi, tgt in self.moves(p) for c in range(clo, chi + 1)
            ]
        return dm

    def accept(self, key: frozenset) -> int:
        """Lowest pattern index matched by a set of positions, -1 if none."""
        match, n = self.nfa.match, self.n
        best = -1
        for p in key:
            if p < n and match[p] >= 0 and (best < 0 or match[p] < best):
                best = match[p]
        return best

    def row(self, key: frozenset, state_id) -> list[int]:
        """The state id after each construction byte class, from the set ``key``.

        ``state_id(frozenset) -> int`` interns target sets (the empty set must map to DEAD).
        The union memo is keyed by the ids of the (persistent) target sets, so a user that
        forgets its states must call :meth:`forget_unions` at the same time.
        """
        num_classes = self.num_classes
        if len(key) == 1:
            # One position (typically inside a character): its moves are sorted and disjoint.
            (p,) = key
            row = [DEAD] * num_classes
            for clo, chi, tgt in self.moves(p):
                row[clo : chi + 1] = [state_id(tgt)] * (chi + 1 - clo)
            return row
        if self.dense:
            return _dense_row(key, self.dense_moves, num_classes, state_id, self.union_memo)
        return _sweep_row(key, self.moves, self.move_shape, num_classes, state_id, self.union_memo)

    def move_shape(self, p: int) -> tuple[int, int]:
        """Positions with the same shape have the same move intervals, in the same order (they
        sit at the same state of one UTF-8 automaton), and differ only in their targets."""
        auto, u, _ = self.position(p)
        return id(auto), u

    def forget_unions(self) -> None:
        self.union_memo.clear()


def determinize(nfa: CharNFA, limits: Limits, deadline: Deadline):
    """Subset construction of every reachable state.

    Returns ``(table int32[S, C], accept int32[S], class_of uint8[256], start)`` where state 0 is
    dead and ``C`` the number of construction byte classes.
    """
    sc = SubsetConstruction(nfa)
    max_states = limits.max_states
    empty = frozenset()
    ids: dict[frozenset, int] = {empty: DEAD}
    sets: list[frozenset] = [empty]
    accept: list[int] = [-1]

    def state_id(key: frozenset) -> int:
        sid = ids.get(key)
        if sid is None:
            sid = len(sets)
            if sid > max_states:
                raise too_many_dfa_states(max_states)
            ids[key] = sid
            sets.append(key)
            accept.append(sc.accept(key))
        return sid

    start = state_id(sc.start_set)
    rows: list[list[int]] = [[DEAD] * sc.num_classes]
    i = 1
    while i < len(sets):
        if i & 255 == 0:
            deadline.check("subset construction")
        rows.append(sc.row(sets[i], state_id))
        i += 1
    table = np.array(rows, dtype=np.int32).reshape(len(rows), sc.num_classes)
    return table, np.array(accept, dtype=np.int32), sc.class_of.astype(np.uint8), start


# With few byte classes, a row is built class by class; with many, by sweeping over the class
# intervals where some position's move starts or ends.
_DENSE_MAX_CLASSES = 40


def _union_state(active_targets: list, state_id, union_memo: dict) -> int:
    """The DFA state of the union of ``active_targets`` (persistent frozensets)."""
    if len(active_targets) == 1:
        return state_id(active_targets[0])
    key = tuple(sorted(map(id, active_targets)))
    sid = union_memo.get(key)
    if sid is None:
        sid = union_memo[key] = state_id(frozenset().union(*active_targets))
    return sid


def _dense_row(positions, dense_moves, num_classes: int, state_id, union_memo) -> list[int]:
    buckets: list[list | None] = [None] * num_classes
    for p in positions:
        for c, tgt in dense_moves(p):
            b = buckets[c]
            if b is None:
                buckets[c] = [tgt]
            elif tgt not in b:
                b.append(tgt)
    return [DEAD if b is None else _union_state(b, state_id, union_memo) for b in buckets]


def _sweep_row(positions, moves, move_shape, num_classes: int, state_id, union_memo) -> list[int]:
    # Positions of one shape move on the same intervals: each interval becomes one event pair
    # carrying all their targets (a bundle), so counted repeats of one class, whose sets hold
    # the same character position at many counts, sweep as one.
    shapes: dict = {}
    for p in positions:
        shapes.setdefault(move_shape(p), []).append(p)
    events = []
    for members in shapes.values():
        if len(members) == 1:
            for clo, chi, tgt in moves(members[0]):
                bundle = (tgt,)
                events.append((clo, 1, bundle))
                events.append((chi + 1, -1, bundle))
            continue
        for interval in zip(*(moves(p) for p in members), strict=True):
            clo, chi = interval[0][0], interval[0][1]
            bundle = tuple({id(m[2]): m[2] for m in interval}.values())
            events.append((clo, 1, bundle))
            events.append((chi + 1, -1, bundle))
    events.sort(key=_event_key)
    row = [DEAD] * num_classes
    active: dict[int, list] = {}  # id(bundle) -> [bundle, count]
    k = 0
    num_events = len(events)
    while k < num_events:
        pos = events[k][0]
        while k < num_events and events[k][0] == pos:
            _, delta, bundle = events[k]
            entry = active.get(id(bundle))
            if entry is None:
                active[id(bundle)] = [bundle, 1]
            else:
                entry[1] += delta
                if entry[1] == 0:
                    del active[id(bundle)]
            k += 1
        if not active or pos >= num_classes:
            continue
        end = events[k][0] if k < num_events else num_classes
        targets = {id(t): t for e in active.values() for t in e[0]}
        sid = _union_state(list(targets.values()), state_id, union_memo)
        row[pos:end] = [sid] * (end - pos)
    return row


def _event_key(event: tuple) -> tuple[int, int]:
    return event[0], event[1]


def _as_bytes(text: str | bytes) -> bytes | None:
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not valid UTF-8, never matched
        return None


class WholeInputs:
    """What follows from ``start``, ``run`` and the per-state ``_accept`` list: the queries on
    single states and on whole inputs that the eager :class:`DFA` and the lazy automaton share."""

    DEAD = DEAD
    dead = DEAD
    start: int
    _accept: list[int]

    def run(self, data: bytes, state: int | None = None) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def is_match(self, state: int) -> bool:
        return self._accept[state] >= 0

    def is_dead(self, state: int) -> bool:
        return state == DEAD

    def match_index(self, state: int) -> int:
        """Lowest matching pattern index if the input ends in ``state``; -1 if none."""
        return self._accept[state]

    def fullmatch(self, text: str | bytes) -> bool:
        """Whether the whole of ``text`` matches (``re.fullmatch`` on a str)."""
        data = _as_bytes(text)
        return data is not None and self._accept[self.run(data)] >= 0

    def fullmatch_index(self, text: str | bytes) -> int:
        """Lowest index of a pattern that fully matches ``text``, or -1."""
        data = _as_bytes(text)
        return -1 if data is None else self._accept[self.run(data)]

    def is_viable(self, prefix: str | bytes) -> bool:
        """Whether some continuation of ``prefix`` (possibly empty) matches."""
        data = _as_bytes(prefix)
        return data is not None and self.run(data) != DEAD

    @property
    def is_empty(self) -> bool:
        """Whether no string at all matches."""
        return self.start == DEAD


class DFA(WholeInputs):
    """A minimized DFA over UTF-8 bytes with fullmatch semantics.

    ``table[s, byte_classes[b]]`` is the state after reading byte ``b`` in state ``s``; state 0 is
    dead (it loops to itself and never matches); ``accept[s]`` is the lowest index of a pattern
    that matches if the input ends in ``s``, or -1.
    """

    def __init__(
        self,
        table: np.ndarray,
        accept: np.ndarray,
        byte_classes: np.ndarray,
        start: int,
        patterns: Sequence[str],
    ):
        self.table = np.ascontiguousarray(table, dtype=np.int32)  # int32[S, C]
        self.accept = np.ascontiguousarray(accept, dtype=np.int32)  # int32[S]
        self.byte_classes = np.ascontiguousarray(byte_classes, dtype=np.uint8)  # uint8[256]
        for a in (self.table, self.accept, self.byte_classes):
            a.setflags(write=False)
        self.start = int(start)
        self.patterns = tuple(patterns)
        self.num_states = int(self.table.shape[0])
        self.num_byte_classes = int(self.table.shape[1])
        # Plain-Python copies for the per-byte methods (numpy scalar indexing is slow).
        self._rows = self.table.tolist()
        self._cls = self.byte_classes.tolist()
        self._accept = self.accept.tolist()

    def __repr__(self) -> str:
        return (
            f"DFA(patterns={self.patterns!r}, num_states={self.num_states}, "
            f"num_byte_classes={self.num_byte_classes})"
        )

    # -- single steps -------------------------------------------------------------------------
    def next(self, state: int, byte: int) -> int:
        return self._rows[state][self._cls[byte]]

    # -- whole inputs -------------------------------------------------------------------------
    def run(self, data: bytes, state: int | None = None) -> int:
        """State after reading ``data`` from ``state`` (default: the start)."""
        s = self.start if state is None else state
        rows, cls = self._rows, self._cls
        for b in data:
            s = rows[s][cls[b]]
            if s == DEAD:
                return DEAD
        return s

    def transitions(self) -> np.ndarray:
        """The full table, ``int32[num_states, 256]``."""
        return np.ascontiguousarray(self.table[:, self.byte_classes.astype(np.intp)])
