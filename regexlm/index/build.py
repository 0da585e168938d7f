"""Walk every token through the automaton from every state at once, keeping only live pairs.

The question the index answers is: from DFA state ``s``, where does token ``t`` lead? A token
is a byte string, so the answer is ``s`` stepped through its bytes, or the dead state.

Two observations keep the cost near the number of live answers rather than
states x vocabulary x token length:

1. **Walk the vocabulary trie level by level** (:mod:`regexlm.index.trie`). At depth ``d`` we
   hold the live pairs ``(origin state, prefix, current state)``; each is extended by the
   prefix's children and dropped the moment the automaton dies. Only prefixes that are alive
   from at least one origin are expanded.
2. **Walk byte classes, not bytes.** The automaton cannot tell apart two bytes of the same class,
   so two prefixes with the same class sequence behave identically from every state. At every
   depth the live trie nodes are grouped by their class sequence ("class nodes") and pairs are
   kept per class node. ``.{0,50}`` has 262k tokens but only a few thousand class sequences.

The output is an edge list ``(origin, group, target)`` where a group is a class node at which
some token string ends, and ``group_of_string`` maps each distinct token string to its group
(-1: dead from every state). Tokens of one group behave alike everywhere; the classes of the
final index merge groups further (:mod:`regexlm.index.classes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from regexlm.errors import PatternTooComplexError

# The most live (origin, class node) pairs one depth may hold before the build gives up.
MAX_LIVE_PAIRS = 200_000_000


@dataclass
class Edges:
    origin: torch.Tensor  # [E] DFA state the token starts from
    group: torch.Tensor  # [E] behaviour group of the token
    target: torch.Tensor  # [E] DFA state after the token (never dead)
    group_of_string: torch.Tensor  # [U] group of each distinct token string, -1 if dead
    num_groups: int


def _expand(start: torch.Tensor, count: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranges ``[start[i], start[i] + count[i])`` laid end to end -> (values, owner i)."""
    owner = torch.repeat_interleave(torch.arange(count.numel(), device=count.device), count, output_size=total)
    first = torch.cumsum(count, 0) - count
    values = start[owner] + torch.arange(total, device=count.device) - first[owner]
    return values, owner


def _unique_inverse(keys: torch.Tensor, bound: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted distinct values of ``keys`` (all in ``[0, bound)``) and each key's rank among them."""
    if bound <= max(1 << 16, 4 * keys.numel()):
        present = torch.zeros(bound, dtype=torch.bool, device=keys.device)
        present[keys] = True
        rank = torch.cumsum(present, 0) - 1
        return present.nonzero().flatten(), rank[keys]
    uniq, inv = torch.unique(keys, sorted=True, return_inverse=True)
    return uniq, inv


def walk(trie, table: torch.Tensor, byte_classes: torch.Tensor) -> Edges:
    """Edges of every live (DFA state, token string) pair.

    ``table``: ``int64[S, K]`` DFA transitions over byte classes, state 0 dead;
    ``byte_classes``: ``int64[256]``.
    """
    device = table.device
    num_states, num_classes = table.shape
    origins_o, origins_g, origins_t = [], [], []
    group_of_string = torch.full((trie.num_strings,), -1, dtype=torch.int64, device=device)
    group_base = 0
    if trie.max_len == 0 or num_states <= 1:
        return Edges(*(torch.zeros(0, dtype=torch.int64, device=device),) * 3, group_of_string, 0)

    # Depth 1: the class nodes are the byte classes present among first bytes.
    nodes = torch.arange(trie.byte[0].numel(), device=device)  # live trie nodes at this depth
    cn_cls, node_cn = _unique_inverse(byte_classes[trie.byte[0]], num_classes)
    # cur: [S-1, n_cn] state after the first byte, from every live origin
    cur = table[1:, cn_cls]
    o, j = (cur != 0).nonzero(as_tuple=True)
    q = cur[o, j]
    o = o + 1
    n_cn = cn_cls.numel()

    for depth in range(trie.max_len):
        if o.numel() == 0:
            break
        if o.numel() > MAX_LIVE_PAIRS:
            raise PatternTooComplexError(
                f"index build needs more than {MAX_LIVE_PAIRS} live (state, token prefix) pairs",
                limit="live_pairs",
            )
        # Keep the trie nodes whose class node is alive from some origin.
        live_cn = torch.zeros(n_cn, dtype=torch.bool, device=device)
        live_cn[j] = True
        keep = live_cn[node_cn]
        nodes, node_cn = nodes[keep], node_cn[keep]

        # Token strings ending here: their group is this class node.
        strings = trie.term[depth][nodes]
        ends = strings >= 0
        if bool(ends.any()):
            end_cn = node_cn[ends]
            group_of_string[strings[ends]] = group_base + end_cn
            is_end = torch.zeros(n_cn, dtype=torch.bool, device=device)
            is_end[end_cn] = True
            rec = is_end[j]
            origins_o.append(o[rec])
            origins_g.append(j[rec] + group_base)
            origins_t.append(q[rec])
        group_base += n_cn

        if depth + 1 >= trie.max_len:
            break
        # Children of the live nodes, grouped into the next depth's class nodes.
        count = trie.child_count[depth][nodes]
        total = int(count.sum())
        if total == 0:
            break
        child, owner = _expand(trie.child_start[depth][nodes], count, total)
        key = node_cn[owner] * num_classes + byte_classes[trie.byte[depth + 1][child]]
        ukey, child_cn = _unique_inverse(key, n_cn * num_classes)
        parent_of_new = torch.div(ukey, num_classes, rounding_mode="floor")
        cls_of_new = ukey - parent_of_new * num_classes
        # The class nodes of one parent are contiguous in `ukey`.
        ids = torch.arange(n_cn, device=device)
        first_new = torch.searchsorted(parent_of_new, ids)
        num_new = torch.searchsorted(parent_of_new, ids, right=True) - first_new

        # Extend every live pair by its class node's children.
        pair_count = num_new[j]
        pair_total = int(pair_count.sum())
        new_j, owner = _expand(first_new[j], pair_count, pair_total)
        new_q = table[q[owner], cls_of_new[new_j]]
        alive = new_q != 0
        o, j, q = o[owner][alive], new_j[alive], new_q[alive]
        nodes, node_cn, n_cn = child, child_cn, ukey.numel()

    if origins_o:
        origin, group, target = torch.cat(origins_o), torch.cat(origins_g), torch.cat(origins_t)
    else:
        origin = group = target = torch.zeros(0, dtype=torch.int64, device=device)
    return Edges(origin, group, target, group_of_string, group_base)
