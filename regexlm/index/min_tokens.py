"""Token-level reachability: which states tokens can complete, and in how few tokens.

The DFA guarantees that every live state can reach a match with *bytes*. Tokens are coarser:
a state may only be reachable mid-token (after a byte that no token ends on), or every token
that leaves it may overshoot. Such states are useless at a token boundary, and a token leading
into one would be a dead end. Over the graph whose edges are ``s -> next(s, t)`` for every live
(state, token) pair:

* ``min_tokens[s]`` is the breadth-first distance from ``s`` to an accepting state, i.e. the
  fewest tokens (EOS excluded) that complete a match; infinite = not co-reachable;
* the index keeps the states that are reachable from the start **and** co-reachable. A shortest
  path to a match only passes through co-reachable states, so one backward pass and one
  forward pass give the fixed point; no iteration is needed.
"""

from __future__ import annotations

import numpy as np

UNREACHABLE = np.iinfo(np.int32).max
# Graphs with at most this many edges are searched with plain Python lists (no array overhead).
SMALL_GRAPH = 4096


def _csr(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Adjacency ``src -> dst`` as (row starts ``int64[n + 1]``, destinations sorted by source)."""
    order = np.argsort(src, kind="stable")
    starts = np.searchsorted(src[order], np.arange(n + 1))
    return starts, dst[order]


def _bfs(
    starts: np.ndarray, adj: np.ndarray, sources: np.ndarray, n: int, allowed=None
) -> np.ndarray:
    """Breadth-first distances from ``sources`` over a CSR graph; ``allowed`` masks visitable nodes."""
    dist = np.full(n, UNREACHABLE, dtype=np.int64)
    frontier = np.flatnonzero(np.bincount(sources, minlength=n))
    if allowed is not None:
        frontier = frontier[allowed[frontier]]
    dist[frontier] = 0
    level = 0
    while frontier.size:
        level += 1
        lo, hi = starts[frontier], starts[frontier + 1]
        counts = hi - lo
        total = int(counts.sum())
        if total == 0:
            break
        owner = np.repeat(np.arange(frontier.size), counts)
        idx = lo[owner] + np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        nxt = adj[idx]
        nxt = nxt[dist[nxt] == UNREACHABLE]
        if allowed is not None:
            nxt = nxt[allowed[nxt]]
        dist[nxt] = level
        frontier = np.flatnonzero(dist == level)
    return dist


def token_distances(
    origin: np.ndarray, target: np.ndarray, accepting: np.ndarray, start: int, num_states: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(keep bool[S], min_tokens int64[S])`` over DFA states for the edge list ``origin -> target``.

    ``accepting``: ``bool[S]``. ``min_tokens`` is ``UNREACHABLE`` where no match can be reached.
    """
    if origin.size <= SMALL_GRAPH:
        return _token_distances_small(
            origin.tolist(), target.tolist(), accepting, start, num_states
        )
    rstarts, radj = _csr(target, origin, num_states)
    min_tokens = _bfs(rstarts, radj, np.nonzero(accepting)[0], num_states)
    coreach = min_tokens != UNREACHABLE
    fstarts, fadj = _csr(origin, target, num_states)
    reach = _bfs(fstarts, fadj, np.array([start]), num_states, allowed=coreach) != UNREACHABLE
    return reach & coreach, min_tokens


def _token_distances_small(origin: list, target: list, accepting: np.ndarray, start: int, n: int):
    """:func:`token_distances` for small graphs, with Python adjacency lists."""
    preds: list[list[int]] = [[] for _ in range(n)]
    succs: list[list[int]] = [[] for _ in range(n)]
    for o, t in zip(origin, target, strict=True):
        preds[t].append(o)
        succs[o].append(t)
    dist = [UNREACHABLE] * n
    frontier = np.flatnonzero(accepting).tolist()
    for s in frontier:
        dist[s] = 0
    level = 0
    while frontier:
        level += 1
        nxt = []
        for t in frontier:
            for o in preds[t]:
                if dist[o] == UNREACHABLE:
                    dist[o] = level
                    nxt.append(o)
        frontier = nxt
    reach = [False] * n
    if dist[start] != UNREACHABLE:
        reach[start] = True
        stack = [start]
        while stack:
            for t in succs[stack.pop()]:
                if not reach[t] and dist[t] != UNREACHABLE:
                    reach[t] = True
                    stack.append(t)
    min_tokens = np.array(dist, dtype=np.int64)
    return np.array(reach, dtype=bool) & (min_tokens != UNREACHABLE), min_tokens
