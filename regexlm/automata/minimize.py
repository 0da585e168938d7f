"""Pruning and minimization of a DFA, and its final byte classes.

**Pruning.** A state from which no accepting state can be reached is as good as dead: whatever
follows, the input cannot match. The contract promises that every state except the dead state can
still reach a match (so "not dead" means "viable"), so such states are found by a backward search
from the accepting states and merged into state 0.

**Minimization** is Hopcroft's partition refinement. Start from the partition of states by
``accept`` value (the dead state apart), and repeatedly split blocks by their predecessors over
each byte class: two states stay together only if every byte leads them into the same block.
Hopcroft's rule of adding only the smaller half of a split block back to the work list gives
``O(C n log n)``. Multiple patterns are handled by the initial partition: states accepting
different pattern indices are never merged.

**Numbering and byte classes.** States are renumbered in breadth-first order from the start, the
dead state first (id 0). Finally bytes whose columns agree in the whole table share a class.
"""

from __future__ import annotations

import numpy as np

from regexlm.automata.limits import Deadline

DEAD = 0


def _predecessors(table: np.ndarray):
    """CSR of distinct (target -> sources) pairs: (indptr int64[S+1], sources int64[E])."""
    num_states, num_classes = table.shape
    src = np.repeat(np.arange(num_states, dtype=np.int64), num_classes)
    dst = table.reshape(-1).astype(np.int64)
    pairs = np.unique(dst * num_states + src)
    dst, src = pairs // num_states, pairs % num_states
    indptr = np.zeros(num_states + 1, dtype=np.int64)
    np.add.at(indptr, dst + 1, 1)
    return np.cumsum(indptr), src


def prune(table: np.ndarray, accept: np.ndarray) -> np.ndarray:
    """Redirect every transition into a state that cannot reach a match to the dead state.

    Returns a new table; unreachable rows are left in place (minimization drops them).
    """
    indptr, src = _predecessors(table)
    live = accept >= 0
    stack = np.flatnonzero(live).tolist()
    indptr_l, src_l = indptr.tolist(), src.tolist()
    live_l = live.tolist()
    while stack:
        t = stack.pop()
        for s in src_l[indptr_l[t] : indptr_l[t + 1]]:
            if not live_l[s]:
                live_l[s] = True
                stack.append(s)
    live = np.array(live_l, dtype=bool)
    live[DEAD] = False
    out = np.where(live[table], table, DEAD).astype(np.int32)
    out[~live] = DEAD
    return out


def hopcroft(table: np.ndarray, accept: np.ndarray, deadline: Deadline) -> np.ndarray:
    """Block id of every state in the coarsest partition compatible with ``accept``."""
    num_states, num_classes = table.shape
    # Inverse transitions per class: inv[c][t] = states s with table[s, c] == t.
    inv: list[dict[int, list[int]]] = []
    for c in range(num_classes):
        col = table[:, c]
        order = np.argsort(col, kind="stable")
        targets = col[order]
        cuts = np.flatnonzero(np.diff(targets)) + 1
        d: dict[int, list[int]] = {}
        for chunk in np.split(order, cuts):
            if len(chunk):
                d[int(col[chunk[0]])] = chunk.tolist()
        inv.append(d)

    keys = accept.tolist()
    keys[DEAD] = "dead"
    groups: dict[object, set[int]] = {}
    for s, k in enumerate(keys):
        groups.setdefault(k, set()).add(s)
    blocks: list[set[int]] = list(groups.values())
    block_of = [0] * num_states
    for b, members in enumerate(blocks):
        for s in members:
            block_of[s] = b
    largest = max(range(len(blocks)), key=lambda b: len(blocks[b]))
    work = {b for b in range(len(blocks)) if b != largest}

    rounds = 0
    while work:
        rounds += 1
        if rounds & 127 == 0:
            deadline.check("minimization")
        splitter = list(blocks[work.pop()])
        for c in range(num_classes):
            inv_c = inv[c]
            hit: dict[int, list[int]] = {}
            for t in splitter:
                srcs = inv_c.get(t)
                if srcs:
                    for s in srcs:
                        b = block_of[s]
                        lst = hit.get(b)
                        if lst is None:
                            hit[b] = [s]
                        else:
                            lst.append(s)
            for b, inside in hit.items():
                members = blocks[b]
                if len(inside) == len(members):
                    continue
                new = len(blocks)
                inside_set = set(inside)
                members -= inside_set
                blocks.append(inside_set)
                for s in inside_set:
                    block_of[s] = new
                if b in work:
                    work.add(new)
                else:
                    work.add(new if len(inside_set) <= len(members) else b)
    return np.array(block_of, dtype=np.int64)


def renumber(table: np.ndarray, accept: np.ndarray, start: int, block_of: np.ndarray):
    """Quotient by ``block_of``, keeping reachable blocks in BFS order, the dead block as 0.

    Returns ``(table int32[S', C], accept int32[S'], start)``.
    """
    dead_block = int(block_of[DEAD])
    rep: dict[int, int] = {}  # block -> a representative state
    for s, b in enumerate(block_of.tolist()):
        rep.setdefault(b, s)
    new_id = {dead_block: DEAD}
    order = [dead_block]
    start_block = int(block_of[start])
    if start_block not in new_id:
        new_id[start_block] = len(order)
        order.append(start_block)
    rows = table.tolist()
    bo = block_of.tolist()
    i = 1
    while i < len(order):
        for t in rows[rep[order[i]]]:
            b = bo[t]
            if b not in new_id:
                new_id[b] = len(order)
                order.append(b)
        i += 1
    out = np.empty((len(order), table.shape[1]), dtype=np.int32)
    acc = np.empty(len(order), dtype=np.int32)
    for nid, b in enumerate(order):
        out[nid] = [new_id[bo[t]] for t in rows[rep[b]]]
        acc[nid] = accept[rep[b]]
    out[DEAD] = DEAD
    acc[DEAD] = -1
    return out, acc, new_id[start_block]


def compress_classes(table: np.ndarray, class_of: np.ndarray):
    """Merge bytes whose columns agree: ``(table int32[S, C'], byte_classes uint8[256])``.

    Classes are numbered in order of their first byte.
    """
    full = table[:, class_of.astype(np.intp)]  # int32[S, 256]
    _, first, inverse = np.unique(full, axis=1, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    # Renumber classes by first byte.
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    byte_classes = rank[inverse].astype(np.uint8)
    new_table = full[:, np.sort(first)]
    return np.ascontiguousarray(new_table, dtype=np.int32), byte_classes
