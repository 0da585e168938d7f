"""Minimization of a DFA, and its final numbering and byte classes.

The input comes from the subset construction over a trimmed NFA, so every state but the dead
state can still reach a match (the contract's "not dead" means "viable"); minimization keeps it
so, since it only merges states with the same future.

**Minimization** is partition refinement. Start from the partition of states by ``accept``
value (the dead state apart; states accepting different pattern indices are never merged) and
split blocks until two states share a block only if every byte class leads them into the same
block. Two algorithms do the splitting:

* Moore's rounds, vectorized with numpy: each round regroups states by (own block, blocks of
  all successors). A round costs ``O(S C)`` in C code, but it takes as many rounds as the longest
  word needed to tell two states apart, so it suits the shallow DFAs most patterns give.
* Hopcroft's algorithm finishes deep DFAs (long chains such as ``[a-z]{1,200}``): split blocks
  by the predecessors of a splitter block, and put back only the smaller half of each split,
  for ``O(C n log n)`` in all. Small tables (a few thousand entries) skip Moore and go to it
  directly, since there a numpy round costs more than Hopcroft's whole Python run.

**Numbering and byte classes.** The dead state becomes 0 and the start 1; the other states
keep the breadth-first order of the subset construction. Finally bytes whose columns agree in the
whole table share a class.
"""

from __future__ import annotations

import numpy as np

from regexlm.automata.limits import Deadline

DEAD = 0


def initial_partition(table: np.ndarray, accept: np.ndarray) -> np.ndarray:
    """Block ids by ``accept`` value; states equivalent to the dead state in its block.

    A state with no transition out of the dead state and no match is equivalent to the dead
    state (none arise from a trimmed NFA, but the rule costs nothing).
    """
    key = accept.astype(np.int64) + 1  # 0 .. patterns
    dead_like = (accept < 0) & ~(table != DEAD).any(axis=1)
    key[dead_like] = -1
    _, blocks = np.unique(key, return_inverse=True)
    return blocks.reshape(-1).astype(np.int64)


def _row_hash(sig: np.ndarray) -> np.ndarray:
    """A 64-bit hash per row of ``sig`` (int64[S, K]); collisions are checked by the caller."""
    k = sig.shape[1]
    mult = (np.arange(1, k + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    with np.errstate(over="ignore"):
        h = (sig.astype(np.uint64) + np.uint64(0x632BE59BD9B4E019)) * mult
        h ^= h >> np.uint64(29)
        return h.sum(axis=1, dtype=np.uint64)


def moore(table: np.ndarray, blocks: np.ndarray, deadline: Deadline, max_rounds: int):
    """Moore's refinement, vectorized: ``(blocks, converged)`` after at most ``max_rounds``.

    Each round splits blocks by the blocks of the successors, ``O(S C)`` in numpy. It needs as
    many rounds as the longest word needed to tell two states apart, so it is the fast path for
    shallow DFAs and hands deep ones (long chains) to :func:`hopcroft`.
    """
    count = int(blocks.max()) + 1
    for _ in range(max_rounds):
        sig = np.concatenate([blocks[:, None], blocks[table]], axis=1)  # int64[S, 1 + C]
        h = _row_hash(sig)
        _, first, new = np.unique(h, return_index=True, return_inverse=True)
        new = new.reshape(-1)
        if not (sig == sig[first[new]]).all():  # a hash collision: exact (slow) grouping
            _, new = np.unique(sig, axis=0, return_inverse=True)
            new = new.reshape(-1)
        new_count = int(new.max()) + 1
        if new_count == count:
            return blocks, True
        blocks, count = new.astype(np.int64), new_count
        deadline.check("minimization")
    return blocks, False


def hopcroft(
    table: np.ndarray, accept: np.ndarray, deadline: Deadline, initial: np.ndarray | None = None
) -> np.ndarray:
    """Block id of every state in the coarsest partition refining ``initial``.

    ``initial`` defaults to :func:`initial_partition`; it must keep the dead state apart from
    every state that can still match.
    """
    num_states, num_classes = table.shape
    rows = table.tolist()
    # Inverse transitions, leaving out the dead state (never used as a splitter):
    # inv[t] = [(class, [states s with table[s, class] == t]), ...], non-empty entries only.
    inv_d: list[dict[int, list[int]] | None] = [None] * num_states
    for s, row in enumerate(rows):
        for c, t in enumerate(row):
            if t != DEAD:
                d = inv_d[t]
                if d is None:
                    inv_d[t] = {c: [s]}
                else:
                    lst = d.get(c)
                    if lst is None:
                        d[c] = [s]
                    else:
                        lst.append(s)
    inv = [list(d.items()) if d else [] for d in inv_d]

    if initial is None:
        initial = initial_partition(table, accept)
    groups: dict[int, set[int]] = {}
    for st, k in enumerate(initial.tolist()):
        groups.setdefault(k, set()).add(st)
    blocks: list[set[int]] = list(groups.values())
    block_of = [0] * num_states
    for b, members in enumerate(blocks):
        for st in members:
            block_of[st] = b
    # Splitting by every block but one is enough (the last is the complement of the others);
    # leaving out the dead block skips the bulk of the transitions.
    dead_block = block_of[DEAD]
    work = {b for b in range(len(blocks)) if b != dead_block}

    rounds = 0
    while work:
        rounds += 1
        if rounds & 127 == 0:
            deadline.check("minimization")
        # Predecessors of the splitter, per class: by_class[c] = states going into it on c.
        by_class: dict[int, list[int]] = {}
        for t in blocks[work.pop()]:
            for c, srcs in inv[t]:
                lst = by_class.get(c)
                if lst is None:
                    by_class[c] = list(srcs)
                else:
                    lst.extend(srcs)
        for srcs in by_class.values():
            # Group by the *current* blocks (earlier classes may have split some).
            hit: dict[int, list[int]] = {}
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


# Tables with at most this many entries (states x classes) go straight to Hopcroft: at that
# size its Python passes cost less than Moore's rounds of numpy calls.
HOPCROFT_MAX_ENTRIES = 4096


def minimize(table: np.ndarray, accept: np.ndarray, deadline: Deadline) -> np.ndarray:
    """Block id of every state in the minimal DFA: Hopcroft for small tables; otherwise Moore's
    rounds, then Hopcroft if still going."""
    blocks = initial_partition(table, accept)
    if table.size > HOPCROFT_MAX_ENTRIES:
        blocks, converged = moore(table, blocks, deadline, max_rounds=24)
        if converged:
            return blocks
    return hopcroft(table, accept, deadline, initial=blocks)


def renumber(table: np.ndarray, accept: np.ndarray, start: int, block_of: np.ndarray):
    """Quotient by ``block_of``: the dead block becomes 0, the start block 1 (unless the language
    is empty), the others follow in the order of their first state (breadth-first order, as the
    subset construction numbers states).

    Every state of ``table`` must be reachable from ``start`` (so every block is).
    Returns ``(table int32[S', C], accept int32[S'], start)``.
    """
    num_states = len(block_of)
    _, block_of = np.unique(block_of, return_inverse=True)  # ids 0 .. blocks-1, no gaps
    block_of = block_of.reshape(-1)
    num_blocks = int(block_of.max()) + 1
    rep = np.empty(num_blocks, dtype=np.int64)  # block -> its first (smallest) state
    rep[block_of[::-1]] = np.arange(num_states - 1, -1, -1)
    dead_block = int(block_of[DEAD])
    start_block = int(block_of[start])
    key = rep.copy()
    key[start_block] = -1
    key[dead_block] = -2
    order = np.argsort(key, kind="stable")  # new id -> block
    new_id = np.empty(num_blocks, dtype=np.int64)
    new_id[order] = np.arange(num_blocks)
    out = new_id[block_of[table[rep[order]]]].astype(np.int32)  # int32[S', C]
    acc = accept[rep[order]].astype(np.int32)
    out[DEAD] = DEAD
    acc[DEAD] = -1
    return out, acc, int(new_id[start_block])


def compress_classes(table: np.ndarray, class_of: np.ndarray):
    """Merge bytes whose columns agree: ``(table int32[S, C'], byte_classes uint8[256])``.

    Classes are numbered in order of their first byte.
    """
    table = np.ascontiguousarray(table.T)  # int32[C, S]: one row per old class
    class_of = np.asarray(class_of, dtype=np.int64)
    # the old classes in use, in order of their first byte
    used, first_byte = np.unique(class_of, return_index=True)
    by_first = used[np.argsort(first_byte)].tolist()
    new_of_key: dict[bytes, int] = {}
    keep: list[int] = []  # old class kept for each new class
    new_of_old = np.zeros(table.shape[0], dtype=np.uint8)
    for c in by_first:
        k = table[c].tobytes()
        new = new_of_key.get(k)
        if new is None:
            new = new_of_key[k] = len(keep)
            keep.append(c)
        new_of_old[c] = new
    return np.ascontiguousarray(table[keep].T, dtype=np.int32), new_of_old[class_of]
