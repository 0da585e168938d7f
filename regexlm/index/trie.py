"""A trie of the vocabulary's distinct byte strings, stored level by level as flat tensors.

The index build walks every token's bytes through the automaton from every state. Done token
by token that is states x vocabulary x length steps; done over a trie, tokens that share a
prefix share its walk, and a prefix that dies in the automaton takes all its extensions with it.

Depth ``d`` of the trie (``d = 1 .. max_len``) holds one node per distinct ``d``-byte prefix of a
token string, in lexicographic order. For each level we keep

* ``byte[d]``        ``int64[n_d]``  the node's last byte;
* ``term[d]``        ``int64[n_d]``  the distinct string that ends at the node, or -1;
* ``child_start[d]`` ``int64[n_d]``  first child at depth ``d + 1`` (children are contiguous,
  because the nodes of each level are sorted by parent, then byte);
* ``child_count[d]`` ``int64[n_d]``  number of children;
* ``tail_first[d]``, ``tail_count[d]`` ``int64[n_d]``: the strings strictly longer than the node
  that start with it, a contiguous range of the sorted strings (for finishing a sparse walk
  string by string).

The strings themselves are kept as ``string_bytes uint8[U * W]`` (row-major, zero-padded to
``W = max_len``) with ``string_len int64[U]``.

Token ids with the same bytes share one string: ``string_of[V]`` maps an id to its string, or
-1 for ids that are never allowed (special ids, empty bytes). Built once per vocabulary on the
host with numpy, then copied to the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class VocabTrie:
    string_of: torch.Tensor  # [V] distinct-string id per token, -1 never allowed
    num_strings: int
    byte: list[torch.Tensor]  # per depth: [n_d]
    term: list[torch.Tensor]  # per depth: [n_d]
    child_start: list[torch.Tensor]  # per depth: [n_d]
    child_count: list[torch.Tensor]  # per depth: [n_d]
    tail_first: list[torch.Tensor]  # per depth: [n_d]
    tail_count: list[torch.Tensor]  # per depth: [n_d]
    string_bytes: torch.Tensor  # [U * W] uint8
    string_len: torch.Tensor  # [U]
    token_of_string_start: torch.Tensor  # [U + 1] CSR over `token_ids`
    token_ids: torch.Tensor  # [V'] allowed token ids, grouped by string

    @property
    def max_len(self) -> int:
        return len(self.byte)

    @property
    def width(self) -> int:
        return len(self.byte)

    @property
    def num_nodes(self) -> int:
        return sum(int(b.numel()) for b in self.byte)

    def to(self, device) -> VocabTrie:
        move = lambda xs: [x.to(device) for x in xs]  # noqa: E731
        return VocabTrie(
            self.string_of.to(device),
            self.num_strings,
            move(self.byte),
            move(self.term),
            move(self.child_start),
            move(self.child_count),
            move(self.tail_first),
            move(self.tail_count),
            self.string_bytes.to(device),
            self.string_len.to(device),
            self.token_of_string_start.to(device),
            self.token_ids.to(device),
        )

    @classmethod
    def build(cls, vocab) -> VocabTrie:
        never = vocab.never_allowed()
        strings = sorted({b for b, n in zip(vocab.token_bytes, never, strict=True) if not n})
        index = {s: i for i, s in enumerate(strings)}
        string_of = np.array(
            [-1 if n else index[b] for b, n in zip(vocab.token_bytes, never, strict=True)],
            dtype=np.int64,
        )
        return cls._from_sorted(strings, string_of)

    @classmethod
    def _from_sorted(cls, strings: list[bytes], string_of: np.ndarray) -> VocabTrie:
        u = len(strings)
        lengths = np.fromiter((len(s) for s in strings), dtype=np.int64, count=u)
        width = int(lengths.max(initial=0))
        # padded: [U, width], -1 past the end of each string
        padded = np.full((u, width + 1), -1, dtype=np.int16)
        flat = np.frombuffer(b"".join(strings), dtype=np.uint8)
        rows = np.repeat(np.arange(u), lengths)
        cols = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        padded[rows, cols] = flat
        # lcp[i]: length of the common prefix of strings i-1 and i (0 for the first)
        lcp = np.zeros(u, dtype=np.int64)
        if u > 1:
            differs = padded[1:] != padded[:-1]
            lcp[1:] = np.argmax(differs, axis=1)
        byte, term, node_of_prev = [], [], None
        parents, tail_first, tail_count = [], [], []
        for d in range(1, width + 1):
            members = np.nonzero(lengths >= d)[0]
            new = lcp[members] < d
            node_of = np.full(u, -1, dtype=np.int64)
            node_of[members] = np.cumsum(new) - 1
            first = members[new]
            byte.append(padded[first, d - 1].astype(np.int64))
            term.append(np.where(lengths[first] == d, first, -1))
            parents.append(np.zeros(first.size, dtype=np.int64) if d == 1 else node_of_prev[first])
            block = np.bincount(node_of[members], minlength=first.size)  # strings under each node
            ends_here = (lengths[first] == d).astype(np.int64)
            tail_first.append(first + ends_here)
            tail_count.append(block - ends_here)
            node_of_prev = node_of
        child_start, child_count = [], []
        for d in range(width):
            n = byte[d].size
            if d + 1 < width:
                par = parents[d + 1]
                start = np.searchsorted(par, np.arange(n), side="left")
                stop = np.searchsorted(par, np.arange(n), side="right")
            else:
                start = np.zeros(n, dtype=np.int64)
                stop = start
            child_start.append(start.astype(np.int64))
            child_count.append((stop - start).astype(np.int64))
        string_bytes = np.where(padded[:, :width] >= 0, padded[:, :width], 0).astype(np.uint8)
        order = np.argsort(string_of, kind="stable")
        order = order[string_of[order] >= 0]  # allowed token ids, by string
        starts = np.searchsorted(string_of[order], np.arange(u + 1))
        t = torch.from_numpy
        return cls(
            t(string_of),
            u,
            [t(x) for x in byte],
            [t(x.astype(np.int64)) for x in term],
            [t(x) for x in child_start],
            [t(x) for x in child_count],
            [t(x.astype(np.int64)) for x in tail_first],
            [t(x.astype(np.int64)) for x in tail_count],
            t(np.ascontiguousarray(string_bytes).reshape(-1)),
            t(lengths),
            t(starts.astype(np.int64)),
            t(order.astype(np.int64)),
        )
