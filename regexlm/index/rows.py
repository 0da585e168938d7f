"""A batch of states' rows: every fine class walked through the automaton at once.

The row of a DFA state says where each token leads. Tokens of one fine class lead to the same
place (:mod:`regexlm.index.class_trie`), so the walk goes down the class trie instead of the
vocabulary: at depth ``d`` it holds the live triples ``(origin, class node, current state)``,
extends each by the node's children (one automaton step per child, on its byte class) and drops
a triple the moment the automaton dies. A node that is a fine class records its triples as
edges. Every origin of the batch walks in the same arrays, so a batch costs a few numpy calls
per depth whatever its size.

The automaton is anything with ``step(states, classes) -> states`` over numpy arrays (the lazy
DFA builds the transitions it is asked for; an eager DFA looks them up).
"""

from __future__ import annotations

import numpy as np

from regexlm.index.class_trie import ClassTrie, _expand


def walk_rows(trie: ClassTrie, automaton, origins: np.ndarray):
    """``(origin position int64[E], fine class int64[E], target state int64[E])``: every fine
    class alive from ``origins[i]`` (DFA states, never dead), with the state it leads to."""
    origins = np.asarray(origins, dtype=np.int64)
    m = origins.size
    found_o, found_f, found_q = [], [], []
    if trie.depth == 0 or m == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    n0 = trie.node_class[0].size
    o = np.repeat(np.arange(m), n0)  # [P] origin position
    x = np.tile(np.arange(n0), m)  # [P] class node at this depth
    q = automaton.step(origins[o], trie.node_class[0][x]).astype(np.int64)
    alive = np.flatnonzero(q != 0)
    o, x, q = o[alive], x[alive], q[alive]
    for d in range(trie.depth):
        if o.size == 0:
            break
        fine = trie.node_fine[d][x]
        ends = np.flatnonzero(fine >= 0)
        if ends.size:
            found_o.append(o[ends])
            found_f.append(fine[ends])
            found_q.append(q[ends])
        if d + 1 >= trie.depth:
            break
        count = trie.child_count[d][x]
        total = int(count.sum())
        if total == 0:
            break
        child = _expand(trie.child_start[d][x], count, total)
        pair = np.repeat(np.arange(o.size), count)
        nq = automaton.step(q[pair], trie.node_class[d + 1][child]).astype(np.int64)
        alive = np.flatnonzero(nq != 0)
        o, x, q = o[pair[alive]], child[alive], nq[alive]
    if not found_o:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(found_o), np.concatenate(found_f), np.concatenate(found_q)


class EagerAutomaton:
    """An eager DFA (``table``, ``byte_classes``, ``accept``, ``start``) with the lazy DFA's
    interface: states are their own keys and the cache never clears."""

    epoch = 0

    def __init__(self, dfa):
        self.dfa = dfa
        self.table = np.asarray(dfa.table, dtype=np.int64)  # [S, K]
        self.byte_classes = np.asarray(dfa.byte_classes, dtype=np.uint8)
        self.accept = np.asarray(dfa.accept)
        self.start = int(dfa.start)
        self.patterns = tuple(getattr(dfa, "patterns", ()) or ())
        self._distances: tuple[bytes, np.ndarray] | None = None

    def step(self, states: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return self.table[states, classes]

    def key(self, state: int) -> int:
        return int(state)

    def intern(self, key: int) -> int:
        return int(key)

    def match_index(self, state: int) -> int:
        return int(self.accept[state])

    def needs_clear(self) -> bool:
        return False

    def clear(self) -> None:  # pragma: no cover - never needed
        pass

    def byte_distance(self, state: int, usable: np.ndarray | None = None) -> int:
        """Fewest bytes (in ``usable``) from ``state`` to a match: a backward breadth-first
        search over the whole table, made once per ``usable``."""
        ok = np.ones(256, dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
        if self._distances is None or self._distances[0] != ok.tobytes():
            self._distances = (
                ok.tobytes(),
                _backward_distances(self.table, self.byte_classes, self.accept, ok),
            )
        return int(self._distances[1][state])


def _backward_distances(table, byte_classes, accept, usable) -> np.ndarray:
    unreachable = np.iinfo(np.int32).max
    classes = np.unique(np.asarray(byte_classes, dtype=np.int64)[usable])
    dist = np.full(table.shape[0], unreachable, dtype=np.int64)
    dist[np.asarray(accept) >= 0] = 0
    dist[0] = unreachable
    sub = table[:, classes] if classes.size else table[:, :0]  # [S, k]
    level = 0
    while True:
        frontier = dist == level
        if not frontier.any():
            break
        hit = frontier[sub].any(axis=1) & (dist == unreachable)
        hit[0] = False
        level += 1
        dist[hit] = level
    return dist
