"""The class trie: the vocabulary trie as one pattern sees it, characters merged by class.

A row's walk visits every live node of the vocabulary's byte trie (:mod:`regexlm.index.rows`).
For a pattern that repeats a broad class (``\\w{1,50}``, ``.{0,500}``) most of the trie is
alive from most states, so a row costs a pass over every node: about 600,000 at 262,144 tokens.
Yet such a pattern tells few characters apart (:mod:`regexlm.automata.char_classes`): to
``(\\w+\\s?){1,10}`` a token is a short word over three letters, word character, space, other.

The **character trie** (one per vocabulary) cuts every distinct token string into *units*: each
whole, valid UTF-8 character is a unit, and each byte that is not part of one (half a character,
which byte-level tokenizers have) is a unit of its own. Python's ``surrogateescape`` decoding
does exactly this cut, one unit per character or stray byte, and it is reversible.

The **class trie** (one per pattern) gives every unit a symbol (a character's class, or a stray
byte's byte class) and merges the paths that spell the same symbols: a node is a sequence of
symbols, and a *group* is the set of strings that end at one node. Strings of a group go to the
same state from every state (for a whole character by the classes' definition; for a stray byte
by the byte classes'), so a walk steps one representative unit per node and writes one triple
per group. Walking it gives the same rows as walking the byte trie: at 262,144 tokens,
``(\\w+\\s?){1,10}`` has about 1,100 nodes against 590,000.

The index makes it for a pattern whose walks find a large share of the vocabulary alive
(:data:`regexlm.index.token_index.CLASS_TRIE_WIDTH`); its nodes count in the index's bytes and
are capped (:data:`MAX_NODES`). The character trie is made once per vocabulary, by the first
pattern that needs it (about 0.3 s at 262,144 tokens) or by
:func:`regexlm.index.compiler.prepare`. The C code (``class_trie.c``) makes the class trie; :func:`class_groups_reference` is the
Python reference for the tests.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from regexlm import native
from regexlm.index.rows import flat_trie, preorder

RAW_FIRST = 0xDC80  # surrogateescape writes a stray byte b as the code point 0xDC00 + b
RAW_LAST = 0xDCFF
MAX_NODES = 1 << 12  # beyond this a class trie saves too little for its bytes


@dataclass
class CharTrie:
    """The vocabulary's distinct strings cut into units, as a trie in depth-first preorder:
    ``depth int32[N]`` (1 at a string's first unit), ``unit int32[N]`` (an index into
    ``unit_value``), ``term int32[N]`` (the string ending at the node, or -1). ``unit_value
    uint32[D]`` is a unit's code point (stray bytes as ``0xDC00 + byte``), ``unit_bytes
    uint32[D]`` its UTF-8 bytes, first byte lowest, ``unit_length uint8[D]`` how many."""

    depth: np.ndarray
    unit: np.ndarray
    term: np.ndarray
    max_depth: int
    num_strings: int
    unit_value: np.ndarray
    unit_bytes: np.ndarray
    unit_length: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.depth.size)


@dataclass
class ClassTrie:
    """One pattern's class trie, laid out for the C walk like
    :class:`regexlm.index.rows.FlatTrie`: ``depth``, ``size``, ``node_string`` (here the group
    ending at the node, or -1) in depth-first preorder, and per node the representative unit's
    ``node_bytes uint32`` and ``node_length uint8``. Group ``g`` holds ``weight[g]`` strings, whose
    first tokens are all in one token class; ``first_token[g]`` is one of them."""

    depth: np.ndarray
    size: np.ndarray
    node_string: np.ndarray
    node_bytes: np.ndarray
    node_length: np.ndarray
    max_depth: int
    first_token: np.ndarray
    weight: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.depth.size)

    @property
    def num_strings(self) -> int:
        """Groups: what the walk's triples name."""
        return int(self.weight.size)

    @property
    def nbytes(self) -> int:
        parts = (self.depth, self.size, self.node_string, self.node_bytes, self.node_length)
        return int(sum(a.nbytes for a in parts) + self.first_token.nbytes + self.weight.nbytes)

    @property
    def native_args(self) -> tuple:
        """The trie's leading arguments of the C walk (``node_byte`` is not read)."""
        found = self.__dict__.get("_native_args")
        if found is None:
            found = self.__dict__["_native_args"] = (
                self.depth.ctypes.data,
                self.size.ctypes.data,
                self.node_length.ctypes.data,
                self.node_string.ctypes.data,
                self.num_nodes,
                self.max_depth,
            )
        return found

    @property
    def unit_args(self) -> tuple:
        """The class trie's arguments of the C walk: node bytes, lengths, group weights."""
        return (self.node_bytes.ctypes.data, self.node_length.ctypes.data, self.weight.ctypes.data)


def char_trie(vocab) -> CharTrie:
    """The vocabulary's :class:`CharTrie`, made once per vocabulary."""
    found = getattr(vocab, "_char_trie", None)
    if found is None:
        found = vocab._char_trie = _make_char_trie(vocab)
    return found


def _make_char_trie(vocab) -> CharTrie:
    trie = flat_trie(vocab)
    strings = np.flatnonzero(trie.first_token >= 0)  # strings some text token spells
    texts = [
        vocab.token_bytes[t].decode("utf-8", "surrogateescape")
        for t in trie.first_token[strings].tolist()
    ]
    count = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))  # units a string
    points = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    unit_value, unit_of = np.unique(points, return_inverse=True)
    unit_of = unit_of.reshape(-1).astype(np.int64)
    offset = np.cumsum(count) - count  # first unit of each string
    num_units = np.int64(max(1, unit_value.size))
    levels = []  # per depth: (unit, term, child_start, child_count)
    node_of = np.zeros(strings.size, dtype=np.int64)  # each string's node at the depth before
    alive = np.arange(strings.size)
    depth = 0
    while alive.size:
        key = node_of[alive] * num_units + unit_of[offset[alive] + depth]
        nodes, inverse = np.unique(key, return_inverse=True)  # sorted: by parent, then unit
        inverse = inverse.reshape(-1)
        term = np.full(nodes.size, -1, dtype=np.int64)
        ends = count[alive] == depth + 1
        term[inverse[ends]] = strings[alive[ends]]
        if levels:  # the children of the level above, contiguous per parent
            parents = levels[-1][0].size
            child_count = np.bincount(nodes // num_units, minlength=parents)
            levels[-1][2] = np.cumsum(child_count) - child_count
            levels[-1][3] = child_count
        levels.append([nodes % num_units, term, np.zeros(nodes.size, np.int64), None])
        node_of[alive] = inverse
        alive = alive[~ends]
        depth += 1
    if levels:
        levels[-1][3] = np.zeros(levels[-1][0].size, dtype=np.int64)
    node_depth, _, pre = preorder([(lv[2], lv[3]) for lv in levels])
    unit = np.zeros(node_depth.size, dtype=np.int32)
    term = np.full(node_depth.size, -1, dtype=np.int32)
    for (units, ends, _, _), at in zip(levels, pre, strict=True):
        unit[at] = units
        term[at] = ends
    encoded = [_unit_bytes(int(v)) for v in unit_value.tolist()]
    unit_bytes = np.array([int.from_bytes(b, "little") for b in encoded], dtype=np.uint32).reshape(
        -1
    )
    unit_length = np.array([len(b) for b in encoded], dtype=np.uint8).reshape(-1)
    return CharTrie(
        node_depth,
        unit,
        term,
        len(levels),
        trie.num_strings,
        unit_value.astype(np.uint32),
        unit_bytes,
        unit_length,
    )


def _unit_bytes(value: int) -> bytes:
    if RAW_FIRST <= value <= RAW_LAST:
        return bytes([value - 0xDC00])
    return chr(value).encode("utf-8")


def unit_symbols(chars: CharTrie, automaton) -> tuple[np.ndarray, int]:
    """``(int32[D], count)``: each unit's symbol under ``automaton``: a character's class
    (:attr:`char_partition`), or for a stray byte its byte class after all of those."""
    partition = automaton.char_partition
    value = chars.unit_value.astype(np.int64)
    raw = (value >= RAW_FIRST) & (value <= RAW_LAST)
    symbol = np.empty(value.size, dtype=np.int32)
    symbol[~raw] = partition.classify(value[~raw])
    byte_class = np.asarray(automaton.byte_classes, dtype=np.int32)
    symbol[raw] = partition.num_classes + byte_class[value[raw] - 0xDC00]
    return symbol, partition.num_classes + int(automaton.num_byte_classes)


def available(automaton) -> bool:
    """Whether a class trie can be made and walked for ``automaton``: the C lazy DFA, which
    knows its character classes, and the C code is built."""
    return (
        getattr(automaton, "native_engine", None) is not None
        and getattr(automaton, "char_partition", None) is not None
        and _library() is not None
    )


def class_trie(vocab, automaton, max_nodes: int = MAX_NODES) -> ClassTrie | None:
    """The class trie of ``automaton``'s pattern over ``vocab``, or None when it would have
    more than ``max_nodes`` nodes (or the C code is not built)."""
    fn = _library()
    if fn is None:
        return None
    chars = char_trie(vocab)
    symbol, num_symbols = unit_symbols(chars, automaton)
    cap = int(min(max_nodes, chars.num_nodes))
    depth = np.empty(cap, dtype=np.int32)
    size = np.empty(cap, dtype=np.int32)
    unit = np.empty(cap, dtype=np.int32)
    group = np.empty(cap, dtype=np.int32)
    group_of_string = np.full(chars.num_strings, -1, dtype=np.int32)
    count = fn(
        *(_ptr(chars.depth), _ptr(chars.unit), _ptr(chars.term), chars.num_nodes),
        *(chars.max_depth, _ptr(symbol), num_symbols, cap),
        *(_ptr(depth), _ptr(size), _ptr(unit), _ptr(group), _ptr(group_of_string)),
    )
    if count == -3:
        return None
    if count < 0:
        raise MemoryError("no memory to make a class trie")
    depth, size, unit, group = depth[:count], size[:count], unit[:count], group[:count]
    strings = np.flatnonzero(group_of_string >= 0)
    groups = group_of_string[strings]
    num_groups = int(groups.max()) + 1 if groups.size else 0
    first_token = np.full(num_groups, -1, dtype=np.int32)
    first_token[groups] = flat_trie(vocab).first_token[strings]
    weight = np.bincount(groups, minlength=num_groups).astype(np.int64)
    return ClassTrie(
        np.ascontiguousarray(depth),
        np.ascontiguousarray(size),
        np.ascontiguousarray(group),
        chars.unit_bytes[unit],
        chars.unit_length[unit],
        int(depth.max()) if count else 0,
        first_token,
        weight,
    )


def class_groups_reference(vocab, automaton) -> tuple[int, list[frozenset]]:
    """The class trie's node count and groups (as sets of string ids), made in Python from the
    tokens' text: the reference the tests hold the C code to."""
    trie = flat_trie(vocab)
    partition = automaton.char_partition
    byte_class = automaton.byte_classes
    nodes: set = set()
    groups: dict = {}
    for s in np.flatnonzero(trie.first_token >= 0).tolist():
        text = vocab.token_bytes[int(trie.first_token[s])].decode("utf-8", "surrogateescape")
        path = []
        for ch in text:
            c = ord(ch)
            if RAW_FIRST <= c <= RAW_LAST:
                path.append(("byte", int(byte_class[c - 0xDC00])))
            else:
                path.append(("char", int(partition.classify(np.array([c]))[0])))
            nodes.add(tuple(path))
        groups.setdefault(tuple(path), set()).add(s)
    return len(nodes), [frozenset(g) for g in groups.values()]


def _library():
    return native.declared("class_trie", _load)


def _load(lib):
    fn = lib.regexlm_class_trie
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    fn.argtypes = [p, p, p, i64, i32, p, i64, i64, p, p, p, p, p]
    fn.restype = i64
    return fn


_ptr = native.address
