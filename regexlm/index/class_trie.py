"""The vocabulary trie seen through an automaton's byte classes: the class trie.

An automaton cannot tell apart two bytes of one byte class, so it cannot tell apart two tokens
whose bytes fall in the same classes position by position: from every state they lead to the
same state. The class trie is the vocabulary trie (:mod:`regexlm.index.trie`) with each byte
replaced by its class and equal prefixes merged. Its nodes stand for *class strings*; a node
where some token ends is a **fine class**: a set of tokens that behave alike in every state of
every automaton with these byte classes.

A pattern over ASCII letters has a handful of byte classes, and the 49,152 tokens of a
vocabulary collapse to a few thousand class strings; ``.`` has about eight classes, and the
class trie of a 262,144-token vocabulary has a few tens of thousands of nodes. Walking a state's
row through the class trie (:mod:`regexlm.index.rows`) costs in proportion to the live class
nodes, not to the vocabulary.

Stored level by level (depth ``d`` holds the class strings of ``d + 1`` bytes, sorted by parent
then class, so each node's children are contiguous at the next depth):

* ``node_class[d]``  ``int64[n_d]`` the last byte class of the node;
* ``child_start[d]``, ``child_count[d]`` ``int64[n_d]`` its children at depth ``d + 1``;
* ``node_fine[d]``   ``int64[n_d]`` the fine class of the tokens ending there, or -1.

``fine_of_token int32[V]`` gives each token's fine class, with two reserved ids:
:data:`NEVER` (0) for tokens that are never allowed (special ids, empty bytes) and :data:`EOS`
(1) for end-of-sequence. Built once per (vocabulary, byte classes) with numpy and shared by
every pattern with the same classes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

NEVER = 0
EOS = 1
FIRST_FINE = 2


@dataclass
class ClassTrie:
    node_class: list[np.ndarray]
    child_start: list[np.ndarray]
    child_count: list[np.ndarray]
    node_fine: list[np.ndarray]
    fine_of_token: np.ndarray  # int32[V]
    num_fine: int  # fine classes, the reserved ids included

    @property
    def depth(self) -> int:
        return len(self.node_class)

    @property
    def num_nodes(self) -> int:
        return sum(int(a.size) for a in self.node_class)

    @property
    def nbytes(self) -> int:
        arrays = [*self.node_class, *self.child_start, *self.child_count, *self.node_fine]
        return int(self.fine_of_token.nbytes) + sum(int(a.nbytes) for a in arrays)


def _expand(start: np.ndarray, count: np.ndarray, total: int) -> np.ndarray:
    """Ranges ``[start[i], start[i] + count[i])`` laid end to end."""
    shift = start - (np.cumsum(count) - count)
    return np.repeat(shift, count) + np.arange(total)


def _unique_sorted(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of ``keys`` (in ``[0, bound)``) and each key's rank among them."""
    if bound <= 4 * keys.size + 4096:
        present = np.zeros(bound, dtype=bool)
        present[keys] = True
        rank = np.cumsum(present) - 1
        return np.flatnonzero(present), rank[keys]
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.reshape(-1)


def build_class_trie(host, byte_classes: np.ndarray, eos_ids, vocab_size: int) -> ClassTrie:
    """The class trie of a vocabulary trie (:class:`HostTrie`) under ``byte_classes uint8[256]``."""
    cls = np.asarray(byte_classes, dtype=np.int64)
    k = int(cls.max()) + 1
    node_class, child_start, child_count, node_fine = [], [], [], []
    fine_of_string = np.full(host.num_strings, -1, dtype=np.int64)
    next_fine = FIRST_FINE
    node_cn = None
    for d in range(host.max_len):
        byte = host.byte[d]
        if d == 0:
            keys = cls[byte]
            bound = k
        else:
            parent_cn = np.repeat(node_cn, host.child_count[d - 1])  # [n_d] parent's class node
            keys = parent_cn * k + cls[byte]
            bound = int(node_class[-1].size) * k
        ukeys, node_cn = _unique_sorted(keys, bound)
        n_cn = ukeys.size
        node_class.append(ukeys % k)
        if d > 0:
            parents = ukeys // k
            n_prev = node_class[-2].size
            counts = np.bincount(parents, minlength=n_prev)
            child_count[-1] = counts
            child_start[-1] = np.cumsum(counts) - counts
        child_start.append(np.zeros(n_cn, dtype=np.int64))
        child_count.append(np.zeros(n_cn, dtype=np.int64))
        # fine classes: class nodes where some token string ends
        term = host.term[d]
        ends = np.flatnonzero(term >= 0)
        fine = np.full(n_cn, -1, dtype=np.int64)
        if ends.size:
            end_cn = node_cn[ends]
            has = np.zeros(n_cn, dtype=bool)
            has[end_cn] = True
            ids = np.flatnonzero(has)
            fine[ids] = np.arange(next_fine, next_fine + ids.size)
            next_fine += ids.size
            fine_of_string[term[ends]] = fine[end_cn]
        node_fine.append(fine)
    fine_of_token = np.full(vocab_size, NEVER, dtype=np.int32)
    ok = host.string_of >= 0
    fine_of_token[: host.string_of.size][ok] = fine_of_string[host.string_of[ok]]
    if len(eos_ids):
        fine_of_token[np.asarray(eos_ids, dtype=np.int64)] = EOS
    return ClassTrie(node_class, child_start, child_count, node_fine, fine_of_token, next_fine)


@dataclass
class HostTrie:
    """The vocabulary trie's arrays on the host, as numpy (see :mod:`regexlm.index.trie`)."""

    byte: list[np.ndarray]
    term: list[np.ndarray]
    child_count: list[np.ndarray]
    string_of: np.ndarray
    num_strings: int

    @property
    def max_len(self) -> int:
        return len(self.byte)


def host_trie(vocab) -> HostTrie:
    """The vocabulary's trie as numpy arrays, made once per vocabulary."""
    found = getattr(vocab, "_host_trie", None)
    if found is None:
        trie = vocab.tables("cpu")
        found = HostTrie(
            [b.numpy() for b in trie.byte],
            [t.numpy() for t in trie.term],
            [c.numpy() for c in trie.child_count],
            trie.string_of.numpy(),
            trie.num_strings,
        )
        vocab._host_trie = found
    return found


# Class tries shared between patterns with the same byte classes, bounded by bytes.
CACHE_BYTES = 64 << 20
_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def class_trie(vocab, byte_classes: np.ndarray) -> ClassTrie:
    """The class trie of ``vocab`` under ``byte_classes``, cached per (vocabulary, classes)."""
    classes = np.asarray(byte_classes, dtype=np.uint8)
    key = (vocab.fingerprint, vocab.size, classes.tobytes())
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    found = build_class_trie(host_trie(vocab), classes, vocab.eos_ids, vocab.size)
    with _cache_lock:
        _cache[key] = found
        total = sum(t.nbytes for t in _cache.values())
        while total > CACHE_BYTES and len(_cache) > 1:
            _, old = _cache.popitem(last=False)
            total -= old.nbytes
    return found
