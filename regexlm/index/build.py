"""Walk every token through the automaton from every state at once, keeping only live pairs.

The question the index answers is: from DFA state ``s``, where does token ``t`` lead? A token
is a byte string, so the answer is ``s`` stepped through its bytes, or the dead state.

Three devices keep the cost near the number of live answers rather than
states x vocabulary x token length:

1. **Walk the vocabulary trie level by level** (:mod:`regexlm.index.trie`). At depth ``d`` we
   hold the live pairs ``(origin state, prefix, current state)``; each is extended by the
   prefix's children and dropped the moment the automaton dies. Only prefixes that are alive
   from at least one origin are expanded.
2. **Group prefixes by what they do.** Two prefixes that send every origin state to the same
   state are interchangeable from then on: their extensions by bytes of the same class again
   agree everywhere. So the pairs are kept per *prefix group* ("class node"), not per prefix. A
   depth's groups are first keyed by (parent group, byte class), which is exact because the
   automaton cannot tell apart two bytes of one class; where that leaves many groups, they are
   merged by their transition function (``origin -> current state``), compared through two
   independent 64-bit hashes. ``[a-z ,]{10,80}`` has tens of thousands of letter tokens but
   only one group per (length, spaces) shape, and a DFA whose byte classes split the letters
   (because of literal words elsewhere in the pattern) still gets the same few groups.
3. **Finish small walks string by string.** Deep in the trie few prefixes stay alive (runs of
   dashes, long words), yet each depth costs a fixed number of tensor operations. Once the
   remaining (pair, longer string) combinations are few, they are expanded explicitly and
   walked one byte column at a time, with each string its own group (with numpy when the
   tensors are on the CPU, where its many tiny steps cost less than as torch operations).

The output is an edge list ``(origin, group, target)`` where a group is a class node at which
some token string ends (or a single string finished by the tail walk), and ``strings`` /
``string_group`` list the token strings alive from some state with their group. Tokens of one
group behave alike everywhere; the classes of the final index merge groups further
(:mod:`regexlm.index.classes`).

The hashed merge is the one step that is not exact by construction: two different transition
functions would have to agree on two independent random 64-bit hashes (odds below 2**-80 per
comparison) for a wrong merge; the second hash is checked inside every merged group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from regexlm.errors import PatternTooComplexError

# The most live (origin, class node) pairs one depth may hold before the build gives up.
MAX_LIVE_PAIRS = 200_000_000


@dataclass
class Edges:
    origin: torch.Tensor  # [E] DFA state the token starts from
    group: torch.Tensor  # [E] behaviour group of the token
    target: torch.Tensor  # [E] DFA state after the token (never dead)
    strings: torch.Tensor  # [L] distinct token strings alive from some state
    string_group: torch.Tensor  # [L] their groups
    num_groups: int
    stats: dict = field(default_factory=dict)


def _expand(start: torch.Tensor, count: torch.Tensor, total: int) -> torch.Tensor:
    """Ranges ``[start[i], start[i] + count[i])`` laid end to end."""
    shift = start - (torch.cumsum(count, 0) - count)
    return torch.repeat_interleave(shift, count, output_size=total) + torch.arange(
        total, device=count.device
    )


def _unique_inverse(keys: torch.Tensor, bound: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted distinct values of ``keys`` (all in ``[0, bound)``) and each key's rank among them."""
    if bound <= 4 * keys.numel() + 4096:
        present = torch.zeros(bound, dtype=torch.bool, device=keys.device)
        present[keys] = True
        rank = torch.cumsum(present, 0) - 1
        return present.nonzero().flatten(), rank[keys]
    uniq, inv = torch.unique(keys, sorted=True, return_inverse=True)
    return uniq, inv


# Merge prefix groups by transition function only when a depth has at least this many.
MERGE_FROM = 48


_MULTIPLIERS: dict = {}


def random_multipliers(rows: int, n: int, seed: int, device) -> torch.Tensor:
    """``int64[rows, n]`` fixed random odd numbers (the same on every call), cached per device."""
    key = (rows, seed, str(device))
    found = _MULTIPLIERS.get(key)
    if found is None or found.shape[1] < n:
        size = max(n, 1024, 0 if found is None else 2 * found.shape[1])
        gen = torch.Generator().manual_seed(seed)
        r = torch.randint(-(1 << 62), 1 << 62, (rows, size), generator=gen, dtype=torch.int64)
        found = (r * 2 + 1).to(device)
        _MULTIPLIERS[key] = found
    return found[:, :n]


class _Hashes:
    """Two independent random odd multipliers per DFA state, for hashing transition functions."""

    def __init__(self, num_states: int, device):
        self.r = random_multipliers(2, num_states, 0x1DE5, device)

    def merge(self, pairs: torch.Tensor, n_cn: int):
        """Groups with equal functions -> (new id per group [n_cn], count, kept pair columns)."""
        o, j, q = pairs
        contrib = self.r[:, o] * (2 * q + 1)  # [2, P]
        h = torch.zeros(2, n_cn, dtype=torch.int64, device=pairs.device)
        h.index_add_(1, j, contrib)
        uniq, inv = torch.unique(h[0], return_inverse=True)
        n_new = uniq.numel()
        if n_new == n_cn:
            return None
        ids = torch.arange(n_cn, device=pairs.device)
        rep = torch.empty(n_new, dtype=torch.int64, device=pairs.device)
        rep[inv] = ids
        # the second hash must agree within every merged group, or nothing is merged
        if not bool((h[1, rep[inv]] == h[1]).all()):
            return None
        is_rep = rep[inv] == ids
        return inv, n_new, is_rep[j]


# Switch to the string-by-string tail once this few (pair, longer string) combinations remain.
TAIL_MAX = 16384
# On the CPU, walk the tail with numpy: its many small per-column steps cost about a
# microsecond each there, against several for the same torch operations.
HOST_TAIL = True


def walk(trie, table: torch.Tensor, byte_classes: torch.Tensor) -> Edges:
    """Edges of every live (DFA state, token string) pair.

    ``table``: ``int64[S, K]`` DFA transitions over byte classes, state 0 dead;
    ``byte_classes``: ``int64[256]``.
    """
    device = table.device
    num_states, num_classes = table.shape
    found: list[torch.Tensor] = []  # [3, e] blocks of (origin, group, target)
    ended: list[torch.Tensor] = []  # [2, l] blocks of (string, group)
    group_base = 0
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    if trie.max_len == 0 or num_states <= 1:
        return Edges(empty, empty, empty, empty, empty, 0)
    hashes = _Hashes(num_states, device)

    # Depth 1: the groups are the byte classes present among first bytes.
    nodes = torch.arange(trie.byte[0].numel(), device=device)  # live trie nodes at this depth
    cn_cls, node_cn = _unique_inverse(byte_classes[trie.byte[0]], num_classes)
    cur = table[1:, cn_cls]  # [S-1, n_cn] state after the first byte, from every origin
    o, j = (cur != 0).nonzero(as_tuple=True)
    pairs = torch.stack([o + 1, j, cur[o, j]])  # [3, P]: origin, group, current state
    n_cn = cn_cls.numel()
    stats = {"depths": 0, "pairs": 0, "tail_triples": 0, "tail_columns": 0}

    for depth in range(trie.max_len):
        if pairs.shape[1] == 0:
            break
        stats["depths"] += 1
        stats["pairs"] += pairs.shape[1]
        if pairs.shape[1] > MAX_LIVE_PAIRS:
            raise PatternTooComplexError(
                f"index build needs more than {MAX_LIVE_PAIRS} live (state, token prefix) pairs",
                limit="live_pairs",
            )
        if n_cn >= MERGE_FROM:
            merged = hashes.merge(pairs, n_cn)
            if merged is not None:
                inv, n_cn, keep_pair = merged
                pairs = pairs[:, keep_pair]
                pairs[1] = inv[pairs[1]]
                node_cn = inv[node_cn]
        # Keep the trie nodes whose group is alive from some origin.
        live_cn = torch.zeros(n_cn, dtype=torch.bool, device=device)
        live_cn[pairs[1]] = True
        if not bool(live_cn.all()):
            sel = live_cn[node_cn].nonzero().flatten()
            nodes, node_cn = nodes[sel], node_cn[sel]

        # Token strings ending here: their group is this depth's group.
        strings = trie.term[depth][nodes]
        ends = (strings >= 0).nonzero().flatten()
        if ends.numel():
            end_cn = node_cn[ends]
            ended.append(torch.stack([strings[ends], end_cn + group_base]))
            is_end = torch.zeros(n_cn, dtype=torch.bool, device=device)
            is_end[end_cn] = True
            block = pairs[:, is_end[pairs[1]]]
            block[1] += group_base
            found.append(block)
        group_base += n_cn
        if depth + 1 >= trie.max_len:
            break

        # Few combinations left: finish string by string.
        if pairs.shape[1] <= TAIL_MAX:
            longer = trie.tail_count[depth][nodes].to(torch.float64)
            per_group = torch.bincount(node_cn, weights=longer, minlength=n_cn)
            go_tail = float(per_group[pairs[1]].sum()) <= TAIL_MAX
        else:
            go_tail = False  # with this many pairs, sharing prefixes beats walking strings
        if go_tail:
            tail = _tail_host if HOST_TAIL and device.type == "cpu" else _tail
            group_base = tail(
                trie,
                table,
                byte_classes,
                depth,
                nodes,
                node_cn,
                n_cn,
                pairs,
                group_base,
                found,
                ended,
                stats,
            )
            break

        # Children of the live nodes, keyed by (parent group, byte class).
        count = trie.child_count[depth][nodes]
        total = int(count.sum())
        if total == 0:
            break
        child = _expand(trie.child_start[depth][nodes], count, total)
        key = torch.repeat_interleave(node_cn, count, output_size=total) * num_classes
        key += byte_classes[trie.byte[depth + 1][child]]
        ukey, child_cn = _unique_inverse(key, n_cn * num_classes)
        parent_of_new = torch.div(ukey, num_classes, rounding_mode="floor")
        cls_of_new = ukey - parent_of_new * num_classes
        # The new groups of one parent are contiguous in `ukey`.
        num_new = torch.bincount(parent_of_new, minlength=n_cn)
        first_new = torch.cumsum(num_new, 0) - num_new

        # Extend every live pair by its group's children; drop those the automaton kills.
        pair_count = num_new[pairs[1]]
        pair_total = int(pair_count.sum())
        grown = torch.repeat_interleave(pairs, pair_count, dim=1, output_size=pair_total)  # [3, P']
        grown[1] = _expand(first_new[pairs[1]], pair_count, pair_total)
        grown[2] = table[grown[2], cls_of_new[grown[1]]]
        pairs = grown[:, (grown[2] != 0).nonzero().flatten()]
        nodes, node_cn, n_cn = child, child_cn, ukey.numel()

    if found:
        origin, group, target = torch.cat(found, dim=1)
        strings, string_group = torch.cat(ended, dim=1)
    else:
        origin = group = target = strings = string_group = empty
    return Edges(origin, group, target, strings, string_group, group_base, stats)


def _tail(
    trie, table, byte_classes, depth, nodes, node_cn, n_cn, pairs, group_base, found, ended, stats
) -> int:
    """Walk the strings longer than ``depth + 1`` bytes below the live nodes, column by column.

    Every live pair is joined with the nodes of its group, then with the strings below each
    node; each (origin, state, string) triple steps one byte per column until the string ends
    (an edge) or the automaton dies. Returns the next free group id.
    """
    device = table.device
    # nodes grouped by their group: [n_cn] counts, nodes in group order
    order = torch.argsort(node_cn)
    by_group = nodes[order]
    gcount = torch.bincount(node_cn, minlength=n_cn)
    gfirst = torch.cumsum(gcount, 0) - gcount
    pc = gcount[pairs[1]]
    total = int(pc.sum())
    node = by_group[_expand(gfirst[pairs[1]], pc, total)]
    oq = torch.repeat_interleave(pairs[[0, 2]], pc, dim=1, output_size=total)
    dc = trie.tail_count[depth][node]
    total = int(dc.sum())
    s = _expand(trie.tail_first[depth][node], dc, total)  # [T] strings
    o, q = torch.repeat_interleave(oq, dc, dim=1, output_size=total)
    width = trie.width
    stats["tail_triples"] = total
    done: list[torch.Tensor] = []
    k = depth + 1  # bytes consumed so far
    while s.numel():
        stats["tail_columns"] += 1
        b = trie.string_bytes[s * width + k].long()
        q = table[q, byte_classes[b]]
        k += 1
        alive = q != 0
        finished = alive & (trie.string_len[s] == k)
        if bool(finished.any()):
            done.append(torch.stack([o[finished], s[finished], q[finished]]))
        go = (alive & ~finished).nonzero().flatten()
        o, q, s = o[go], q[go], s[go]
    if not done:
        return group_base
    o, s, q = torch.cat(done, dim=1)
    live, group = torch.unique(s, return_inverse=True)
    found.append(torch.stack([o, group + group_base, q]))
    ended.append(torch.stack([live, torch.arange(live.numel(), device=device) + group_base]))
    return group_base + live.numel()


def _np_expand(start: np.ndarray, count: np.ndarray, total: int) -> np.ndarray:
    """:func:`_expand` in numpy."""
    shift = start - (np.cumsum(count) - count)
    return np.repeat(shift, count) + np.arange(total)


def _tail_host(
    trie, table, byte_classes, depth, nodes, node_cn, n_cn, pairs, group_base, found, ended, stats
) -> int:
    """:func:`_tail` with numpy on CPU tensors (shared memory, no copies of the trie)."""
    device = table.device
    nodes, node_cn, pairs = nodes.numpy(), node_cn.numpy(), pairs.numpy()
    table_np, classes_np = table.numpy(), byte_classes.numpy()
    order = np.argsort(node_cn, kind="stable")
    by_group = nodes[order]
    gcount = np.bincount(node_cn, minlength=n_cn)
    gfirst = np.cumsum(gcount) - gcount
    pc = gcount[pairs[1]]
    total = int(pc.sum())
    node = by_group[_np_expand(gfirst[pairs[1]], pc, total)]
    oq = np.repeat(pairs[[0, 2]], pc, axis=1)
    dc = trie.tail_count[depth].numpy()[node]
    total = int(dc.sum())
    s = _np_expand(trie.tail_first[depth].numpy()[node], dc, total)  # [T] strings
    o, q = np.repeat(oq, dc, axis=1)
    string_bytes, string_len = trie.string_bytes.numpy(), trie.string_len.numpy()
    width = trie.width
    stats["tail_triples"] = total
    done: list[np.ndarray] = []
    k = depth + 1  # bytes consumed so far
    while s.size:
        stats["tail_columns"] += 1
        q = table_np[q, classes_np[string_bytes[s * width + k]]]
        k += 1
        alive = q != 0
        finished = alive & (string_len[s] == k)
        if finished.any():
            done.append(np.stack([o[finished], s[finished], q[finished]]))
        go = np.flatnonzero(alive & ~finished)
        o, q, s = o[go], q[go], s[go]
    if not done:
        return group_base
    o, s, q = np.concatenate(done, axis=1)
    live, group = np.unique(s, return_inverse=True)
    as_t = torch.from_numpy
    found.append(as_t(np.stack([o, group.reshape(-1) + group_base, q])).to(device))
    ended.append(as_t(np.stack([live, np.arange(live.size) + group_base])).to(device))
    return group_base + live.size
