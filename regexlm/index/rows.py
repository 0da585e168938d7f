"""A batch of states' rows: the vocabulary trie walked through the automaton.

The row of a DFA state says where each token leads. Tokens that share a prefix share its walk,
and a prefix that dies in the automaton takes all its extensions with it, so rows are found by
walking the vocabulary trie (:mod:`regexlm.index.trie`) from each state, entering a node only
while the automaton is alive, and recording the state at every node where a token string ends.

Two walks give the same triples ``(origin position, string id, state)``:

* the C walk (:mod:`regexlm.index.native_walk`), depth first, a few nanoseconds a node, used
  whenever it could be built;
* the numpy walk below, level by level: at depth ``d`` it holds the live triples
  ``(origin, node, state)`` and extends each by the node's children, one automaton step per
  child on its byte class. It is the reference the tests hold the C walk to, and the fallback.

The automaton is anything with ``byte_classes``, ``step(states, classes) -> states`` over numpy
arrays (the lazy DFA builds the transitions it is asked for; an eager DFA looks them up), and
for the C walk ``transition_table()`` and ``fill_row(state)``, or the C lazy DFA's
``native_engine``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regexlm.index import native_walk


@dataclass
class FlatTrie:
    """The vocabulary trie laid out for walks, made once per vocabulary.

    For the C walk, the ``N`` nodes in depth-first preorder (a node's subtree is the ``size``
    nodes starting at it): ``depth int32[N]`` (1 for a token's first byte), ``size int32[N]``,
    ``node_byte uint8[N]`` and ``node_string int32[N]`` (the string ending at the node, -1 for
    none, and for strings that are only end-of-sequence ids). For the numpy walk, ``levels``:
    per depth ``(byte, string, child_start, child_count)`` as in
    :class:`regexlm.index.trie.VocabTrie`, strings filtered the same way.

    Strings map to token ids through ``token_start int64[U + 1]`` (CSR over ``token_ids``,
    end-of-sequence ids left out); ``first_token int32[U]`` is each string's first token, and
    ``has_more bool[U]`` marks the few strings that more than one token id spells.
    """

    depth: np.ndarray
    size: np.ndarray
    node_byte: np.ndarray
    node_string: np.ndarray
    max_depth: int
    num_strings: int
    token_start: np.ndarray
    token_ids: np.ndarray
    first_token: np.ndarray
    has_more: np.ndarray | None
    levels: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]

    @property
    def num_nodes(self) -> int:
        return int(self.depth.size)

    @property
    def native_args(self) -> tuple:
        """The trie's leading arguments of the C walk (made once)."""
        found = self.__dict__.get("_native_args")
        if found is None:
            found = self.__dict__["_native_args"] = (
                self.depth.ctypes.data,
                self.size.ctypes.data,
                self.node_byte.ctypes.data,
                self.node_string.ctypes.data,
                self.num_nodes,
                self.max_depth,
            )
        return found

    def tokens(self, strings: np.ndarray) -> np.ndarray:
        """The first token id of each string (the others are its shadows, see
        :meth:`shadows`)."""
        return self.first_token[strings]

    def shadows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(token ids, their first tokens)``: the ids of a string after its first, which
        behave like the first in every row (the same bytes)."""
        if self.has_more is None:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        more = np.flatnonzero(self.has_more)
        start = self.token_start[more]
        count = self.token_start[more + 1] - start - 1
        offset = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        ids = self.token_ids[np.repeat(start + 1, count) + offset]
        return ids.astype(np.int64), np.repeat(self.token_ids[start], count).astype(np.int64)


def flat_trie(vocab) -> FlatTrie:
    """The vocabulary's :class:`FlatTrie`, made once per vocabulary."""
    found = getattr(vocab, "_flat_trie", None)
    if found is None:
        found = vocab._flat_trie = _flatten(vocab.tables("cpu"), vocab.eos_ids)
    return found


def _flatten(trie, eos_ids) -> FlatTrie:
    token_start = trie.token_of_string_start.numpy()
    token_ids = trie.token_ids.numpy()
    is_eos = np.isin(token_ids, np.asarray(list(eos_ids), dtype=np.int64))
    if is_eos.any():  # end-of-sequence ids are never text: drop them from the strings
        string_of_entry = np.repeat(np.arange(token_start.size - 1), np.diff(token_start))
        keep = ~is_eos
        token_ids = token_ids[keep]
        counts = np.bincount(string_of_entry[keep], minlength=token_start.size - 1)
        token_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    counts = np.diff(token_start)
    gone = np.flatnonzero(counts == 0)  # strings left with no token
    levels = []
    for b, t, s, c in zip(trie.byte, trie.term, trie.child_start, trie.child_count, strict=True):
        term = t.numpy()
        if gone.size:
            term = np.where(np.isin(term, gone), -1, term)
        levels.append((b.numpy(), term, s.numpy(), c.numpy()))
    depth, size, positions = preorder([(lv[2], lv[3]) for lv in levels])
    node_byte = np.zeros(depth.size, dtype=np.uint8)
    node_string = np.full(depth.size, -1, dtype=np.int32)
    for (byte, term, _, _), pre in zip(levels, positions, strict=True):
        node_byte[pre] = byte
        node_string[pre] = term
    first_token = np.full(counts.size, -1, dtype=np.int32)
    first_token[counts > 0] = token_ids[token_start[:-1][counts > 0]]
    has_more = counts > 1
    return FlatTrie(
        depth,
        size,
        node_byte,
        node_string,
        len(levels),
        int(trie.num_strings),
        token_start,
        token_ids,
        first_token,
        has_more if has_more.any() else None,
        levels,
    )


def preorder(links: list[tuple[np.ndarray, np.ndarray]]):
    """A trie stored level by level, laid out in depth-first preorder. ``links[d]`` is
    ``(child_start, child_count)`` of the nodes at depth ``d + 1``, whose children are
    contiguous at the next depth, in the order of their parents. Returns ``(depth int32[n],
    size int32[n], positions)``: every node's depth and subtree size in preorder, and per depth
    ``int64[n_d]`` the preorder position of each node."""
    sizes: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(links)
    for d in range(len(links) - 1, -1, -1):  # subtree sizes, deepest level first
        start, count = links[d]
        if d + 1 < len(links):
            below = np.concatenate([[0], np.cumsum(sizes[d + 1])])
            sizes[d] = 1 + below[start + count] - below[start]
        else:
            sizes[d] = np.ones(start.size, dtype=np.int64)
    n = int(sum(s.size for s in sizes))
    depth = np.zeros(n, dtype=np.int32)
    size = np.zeros(n, dtype=np.int32)
    positions = []
    pre = np.zeros(0, dtype=np.int64)
    for d in range(len(links)):  # preorder positions, top level first
        before = np.cumsum(sizes[d]) - sizes[d]  # sizes of earlier nodes of the level
        if d == 0:
            pre = before
        else:
            pstart, pcount = links[d - 1]
            parent = np.repeat(np.arange(pcount.size), pcount)
            pre = pre[parent] + 1 + before - before[pstart[parent]]
        depth[pre] = d + 1
        size[pre] = sizes[d]
        positions.append(pre)
    return depth, size, positions


def walk_rows(
    trie: FlatTrie,
    automaton,
    origins: np.ndarray,
    *,
    native: bool | None = None,
    whole_subtrees: bool = True,
):
    """``(origin position int64[E], string id int64[E], target state int64[E])``: every token
    string alive from ``origins[i]`` (DFA states, never dead), with the state it leads to.

    ``native``: None uses the C walk where it is available; False forces the numpy walk.
    ``whole_subtrees``: see :func:`native_walk.walk` (the C walk only).
    """
    origins = np.asarray(origins, dtype=np.int64)
    fn = native_walk.library() if native is not False else None
    if fn is not None and (
        hasattr(automaton, "native_engine") or hasattr(automaton, "transition_table")
    ):
        return native_walk.walk(fn, trie, automaton, origins, whole_subtrees=whole_subtrees)
    if native:
        raise RuntimeError("the C trie walk is not available")
    return walk_rows_numpy(trie, automaton, origins)


def walk_checked_rows(trie: FlatTrie, automaton, origins: np.ndarray, classes):
    """:func:`walk_rows` with the C walk's class check (see :func:`native_walk.walk`):
    ``(o, s, q, (class_rows, keeps))``, or None where that walk is not available (no C
    library, or an automaton other than the C lazy DFA)."""
    if getattr(automaton, "native_engine", None) is None:
        return None
    fn = native_walk.library()
    if fn is None:
        return None
    origins = np.asarray(origins, dtype=np.int64)
    return native_walk.walk(fn, trie, automaton, origins, classes=classes)


def _expand(start: np.ndarray, count: np.ndarray, total: int) -> np.ndarray:
    """Ranges ``[start[i], start[i] + count[i])`` laid end to end."""
    shift = start - (np.cumsum(count) - count)
    return np.repeat(shift, count) + np.arange(total)


def walk_rows_numpy(trie: FlatTrie, automaton, origins: np.ndarray):
    """The numpy walk (see the module docstring); same result as the C walk, up to order."""
    origins = np.asarray(origins, dtype=np.int64)
    cls = np.asarray(automaton.byte_classes, dtype=np.int64)
    m = origins.size
    empty = np.zeros(0, dtype=np.int64)
    if not trie.levels or m == 0:
        return empty, empty, empty
    found_o, found_s, found_q = [], [], []
    byte0 = trie.levels[0][0]
    n0 = byte0.size
    o = np.repeat(np.arange(m), n0)  # [P] origin position
    x = np.tile(np.arange(n0), m)  # [P] node at this depth
    q = automaton.step(origins[o], cls[byte0[x]]).astype(np.int64)
    alive = np.flatnonzero(q != 0)
    o, x, q = o[alive], x[alive], q[alive]
    depth = len(trie.levels)
    for d in range(depth):
        if o.size == 0:
            break
        _, term, start, count = trie.levels[d]
        string = term[x]
        ends = np.flatnonzero(string >= 0)
        if ends.size:
            found_o.append(o[ends])
            found_s.append(string[ends])
            found_q.append(q[ends])
        if d + 1 >= depth:
            break
        count = count[x]
        total = int(count.sum())
        if total == 0:
            break
        child = _expand(start[x], count, total)
        pair = np.repeat(np.arange(o.size), count)
        nq = automaton.step(q[pair], cls[trie.levels[d + 1][0][child]]).astype(np.int64)
        alive = np.flatnonzero(nq != 0)
        o, x, q = o[pair[alive]], child[alive], nq[alive]
    if not found_o:
        return empty, empty, empty
    return (
        np.concatenate(found_o),
        np.concatenate(found_s).astype(np.int64),
        np.concatenate(found_q),
    )


class EagerAutomaton:
    """An eager DFA (``table``, ``byte_classes``, ``accept``, ``start``) with the lazy DFA's
    interface: states are their own keys and the cache never clears."""

    epoch = 0

    def __init__(self, dfa):
        self.dfa = dfa
        self.table = np.asarray(dfa.table, dtype=np.int64)  # [S, K]
        self._table32 = np.ascontiguousarray(self.table, dtype=np.int32)  # for the C walk
        self.byte_classes = np.asarray(dfa.byte_classes, dtype=np.uint8)
        self.accept = np.asarray(dfa.accept)
        self.start = int(dfa.start)
        self.patterns = tuple(getattr(dfa, "patterns", ()) or ())
        self._distances: tuple[bytes, np.ndarray] | None = None

    def step(self, states: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return self.table[states, classes]

    def transition_table(self) -> np.ndarray:
        return self._table32

    def fill_row(self, state: int) -> np.ndarray:  # pragma: no cover - every row is known
        return self._table32

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
