"""Character classes of a pattern: the code points that no transition of its NFA tells apart.

Every character transition of the NFA reads one code point from a set (a literal, ``\\w``,
``[^"]`` ...). Two code points that belong to exactly the same sets are interchangeable: from
any automaton state, reading either one leads to the same state. The classes are the blocks of
that partition. ``\\w{1,40}@\\w{1,40}`` has four: word characters, ``@``, both at once (none
here), and everything else, so the hundreds of thousands of word characters a vocabulary spells
are one symbol to the automaton.

The byte automaton reads UTF-8, one byte at a time, and its own byte classes cannot merge
characters this way (the continuation bytes of ``é`` and ``ж`` fall in different byte classes
because ``\\w``'s ranges end at many byte values). The index uses the character classes to
merge tokens that spell the same sequence of classes (:mod:`regexlm.index.class_trie`).

Why a whole character suffices: every path of the byte automaton reads whole, valid UTF-8
characters, and UTF-8 is prefix-free. From a state between characters, the bytes of any member
of a class end in the state the class's transitions lead to; from a state inside a character,
the first byte of any whole character (an ASCII or a lead byte where a continuation byte is
expected) is rejected, whatever the member.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

END = 0x110000  # one past the last code point


@dataclass(frozen=True)
class CharPartition:
    """Code points in ``num_classes`` classes: the interval ``[bounds[i], bounds[i + 1])`` is in
    class ``class_of_interval[i]``."""

    bounds: np.ndarray  # int64[k + 1], from 0 to END
    class_of_interval: np.ndarray  # int32[k]
    num_classes: int

    def classify(self, code_points: np.ndarray) -> np.ndarray:
        """``int32[n]``: the class of each code point in ``[0, END)``."""
        at = np.searchsorted(self.bounds, np.asarray(code_points, dtype=np.int64), side="right")
        return self.class_of_interval[at - 1]


def char_partition(nfa) -> CharPartition:
    """The character classes of a character NFA (:class:`regexlm.automata.nfa.CharNFA`)."""
    distinct: dict = {}
    for row in nfa.edges:
        for chars, _ in row:
            distinct.setdefault(id(chars), chars)  # repeats share one set object
    sets = list({chars: None for chars in distinct.values()})  # equal sets once
    if not sets:
        return CharPartition(np.array([0, END], dtype=np.int64), np.zeros(1, np.int32), 1)
    ranges = [np.asarray(s, dtype=np.int64).reshape(-1, 2) for s in sets]
    lo = np.concatenate([r[:, 0] for r in ranges])
    end = np.concatenate([r[:, 1] for r in ranges]) + 1
    bounds = np.unique(np.concatenate([lo, end, [0, END]]))  # [k + 1]
    k = bounds.size - 1
    owner = np.repeat(np.arange(len(sets)), [r.shape[0] for r in ranges])  # set of each range
    # membership[s, i]: interval i lies in set s (ranges of one set are disjoint)
    delta = np.zeros((len(sets), k + 1), dtype=np.int32)
    np.add.at(delta, (owner, np.searchsorted(bounds, lo)), 1)
    np.add.at(delta, (owner, np.searchsorted(bounds, end)), -1)
    member = np.cumsum(delta[:, :k], axis=1) > 0  # [sets, k]
    signature = np.packbits(member, axis=0).T  # [k, ceil(sets / 8)]
    _, class_of_interval = np.unique(signature, axis=0, return_inverse=True)
    class_of_interval = class_of_interval.reshape(-1).astype(np.int32)
    return CharPartition(bounds, class_of_interval, int(class_of_interval.max()) + 1)
