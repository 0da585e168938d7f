"""A small, independent byte-level DFA builder for the index tests.

It lets the index be tested against hand-made automata without the automata layer: patterns
are parsed by Python's own parser (``bytes`` patterns, so every atom is one byte), turned into
a Thompson NFA over bytes, then a DFA by subset construction. States that cannot reach a match
are merged into the dead state 0, as the automata layer's contract requires. No minimization.

Supported: literals, ``.``, classes with ranges and ``\\d \\w \\s`` (ASCII), alternation,
groups, and every greedy or lazy repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

try:
    import re._parser as sre_parse
    from re._constants import (
        ANY,
        BRANCH,
        CATEGORY,
        IN,
        LITERAL,
        MAX_REPEAT,
        MAXREPEAT,
        MIN_REPEAT,
        NEGATE,
        NOT_LITERAL,
        RANGE,
        SUBPATTERN,
    )
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_parse
    from sre_constants import (
        ANY,
        BRANCH,
        CATEGORY,
        IN,
        LITERAL,
        MAX_REPEAT,
        MAXREPEAT,
        MIN_REPEAT,
        NEGATE,
        NOT_LITERAL,
        RANGE,
        SUBPATTERN,
    )

_CATEGORY = {
    "CATEGORY_DIGIT": set(b"0123456789"),
    "CATEGORY_WORD": set(b"0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    "CATEGORY_SPACE": set(b" \t\n\r\f\v"),
}


@dataclass
class TinyDFA:
    num_states: int
    start: int
    byte_classes: np.ndarray  # uint8[256]
    table: np.ndarray  # int32[S, K]
    accept: np.ndarray  # int32[S]
    patterns: tuple = ()

    @property
    def num_byte_classes(self) -> int:
        return int(self.table.shape[1])

    def transitions(self) -> np.ndarray:
        return self.table[:, self.byte_classes]

    def step(self, state: int, data: bytes) -> int:
        for b in data:
            state = int(self.table[state, self.byte_classes[b]])
            if state == 0:
                return 0
        return state


class _NFA:
    def __init__(self):
        self.eps: list[list[int]] = []
        self.byte: list[tuple[frozenset, int] | None] = []

    def new(self) -> int:
        self.eps.append([])
        self.byte.append(None)
        return len(self.eps) - 1


def _class_bytes(items) -> set[int]:
    out: set[int] = set()
    negate = False
    for op, av in items:
        if op is NEGATE:
            negate = True
        elif op is LITERAL:
            out.add(av)
        elif op is RANGE:
            out.update(range(av[0], av[1] + 1))
        elif op is CATEGORY:
            name = str(av)
            if name.startswith("CATEGORY_NOT_"):
                out.update(set(range(256)) - _CATEGORY[name.replace("NOT_", "")])
            else:
                out.update(_CATEGORY[name])
        else:
            raise ValueError(f"unsupported class item {op}")
    return set(range(256)) - out if negate else out


def _build(nfa: _NFA, items, start: int) -> int:
    """Add the NFA of a parsed sequence after ``start``; returns its end state."""
    cur = start
    for op, av in items:
        if op in (LITERAL, NOT_LITERAL, ANY, IN):
            if op is LITERAL:
                bs = {av}
            elif op is NOT_LITERAL:
                bs = set(range(256)) - {av}
            elif op is ANY:
                bs = set(range(256)) - {10}
            else:
                bs = _class_bytes(av)
            nxt = nfa.new()
            nfa.byte[cur] = (frozenset(bs), nxt)
            # a state holds one byte edge at most: chain through a fresh state
            cur = nxt
        elif op is SUBPATTERN:
            cur = _build(nfa, av[-1], cur)
        elif op is BRANCH:
            end = nfa.new()
            for alt in av[1]:
                s = nfa.new()
                nfa.eps[cur].append(s)
                nfa.eps[_build(nfa, alt, s)].append(end)
            cur = end
        elif op in (MAX_REPEAT, MIN_REPEAT):
            lo, hi, body = av
            for _ in range(lo):
                cur = _build(nfa, body, cur)
            if hi == MAXREPEAT:
                loop = nfa.new()
                nfa.eps[cur].append(loop)
                s = nfa.new()
                nfa.eps[loop].append(s)
                nfa.eps[_build(nfa, body, s)].append(loop)
                end = nfa.new()
                nfa.eps[loop].append(end)
                cur = end
            else:
                end = nfa.new()
                for _ in range(hi - lo):
                    nfa.eps[cur].append(end)
                    cur = _build(nfa, body, cur)
                nfa.eps[cur].append(end)
                cur = end
        else:
            raise ValueError(f"unsupported construct {op}")
    return cur


def tiny_dfa(pattern: str | bytes | list) -> TinyDFA:
    """A DFA over bytes for an ASCII pattern (or a list of them: lowest index wins)."""
    patterns = pattern if isinstance(pattern, list) else [pattern]
    nfa = _NFA()
    root = nfa.new()
    finals: dict[int, int] = {}
    for i, p in enumerate(patterns):
        pb = p.encode("ascii") if isinstance(p, str) else p
        s = nfa.new()
        nfa.eps[root].append(s)
        end = _build(nfa, sre_parse.parse(pb), s)
        finals.setdefault(end, i)

    def closure(states):
        stack, seen = list(states), set(states)
        while stack:
            s = stack.pop()
            for t in nfa.eps[s]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)

    start_set = closure([root])
    ids = {frozenset(): 0, start_set: 1}
    order = [frozenset(), start_set]
    rows = []
    k = 0
    while k < len(order):
        cur = order[k]
        row = np.zeros(256, dtype=np.int64)
        for b in range(256):
            nxt = [e[1] for s in cur if (e := nfa.byte[s]) is not None and b in e[0]]
            target = closure(nxt) if nxt else frozenset()
            if target not in ids:
                ids[target] = len(order)
                order.append(target)
            row[b] = ids[target]
        rows.append(row)
        k += 1
    full = np.stack(rows)  # [S, 256]
    accept = np.array(
        [min((finals[s] for s in st if s in finals), default=-1) for st in order], dtype=np.int64
    )
    # merge states that cannot reach a match into the dead state
    alive = accept >= 0
    changed = True
    while changed:
        new = alive | alive[full].any(axis=1)
        new[0] = False
        changed = bool((new != alive).any())
        alive = new
    keep = np.nonzero(alive | (np.arange(len(order)) == 0))[0]
    remap = np.zeros(len(order), dtype=np.int64)
    remap[keep] = np.arange(keep.size)
    full = np.where(alive[full], remap[full], 0)[keep]
    accept = accept[keep]
    start = int(remap[1]) if alive[1] else 0
    # byte classes: bytes with identical columns
    cols, byte_classes = np.unique(full.T, axis=0, return_inverse=True)
    return TinyDFA(
        num_states=int(keep.size),
        start=start,
        byte_classes=byte_classes.reshape(-1).astype(np.uint8),
        table=cols.T.astype(np.int32).copy(),
        accept=accept.astype(np.int32),
        patterns=tuple(p if isinstance(p, str) else p.decode() for p in patterns),
    )
