"""From a set of code points to a small byte automaton for its UTF-8 encodings.

The DFA runs on bytes, so each character class must become the set of byte strings that encode
its members in UTF-8. UTF-8 writes a code point in one to four bytes:

    U+0000..U+007F      0xxxxxxx
    U+0080..U+07FF      110xxxxx 10xxxxxx
    U+0800..U+FFFF      1110xxxx 10xxxxxx 10xxxxxx
    U+10000..U+10FFFF   11110xxx 10xxxxxx 10xxxxxx 10xxxxxx

After the lead byte has chosen a length, each continuation byte carries the next six bits. So
once the lead byte (and any continuation bytes so far) are known, what remains to be read is
exactly described by two things: how many continuation bytes are left (``k``), and which values
of the remaining ``6k`` low bits are members, as ranges relative to the block. We make one
automaton state per distinct ``(k, relative ranges)`` pair. States with the same pair accept the
same suffixes, so sharing them is exactly suffix sharing: the result is the minimal DFA of the
set's encodings. A class like ``\\w`` with hundreds of ranges yields a few hundred states; ``.``
yields eight.

Only valid UTF-8 is ever produced: lead bytes follow from the code point's length, so overlong
forms cannot arise, and the surrogates U+D800..U+DFFF are removed from every set first.

The automata are cached per set, since the same classes (``.``, ``\\w``, ``[^"]``) recur.
"""

from __future__ import annotations

from functools import lru_cache

from regexlm.automata import charset as cs
from regexlm.automata.charset import CharSet

FINAL = -1  # transition target meaning "a whole character has been read" (of set 0)

# (first code point, last code point, lead byte base, continuation bytes) for each length.
_LENGTHS = (
    (0x80, 0x7FF, 0xC0, 1),
    (0x800, 0xFFFF, 0xE0, 2),
    (0x10000, 0x10FFFF, 0xF0, 3),
)


class Utf8Automaton:
    """A byte DFA accepting the UTF-8 encodings of one code-point set.

    ``trans[u]`` lists ``(lo, hi, target)`` byte ranges leaving state ``u``, sorted and disjoint;
    ``target`` is another state, or negative: :data:`FINAL` (-1), or ``final(i)`` in an automaton
    built for several sets. State 0 is the start. ``boundaries`` are the
    byte values where some range starts or ends + 1 (used to build byte classes).
    """

    __slots__ = ("trans", "boundaries", "charsets", "costs")

    def __init__(self, trans: list[list[tuple[int, int, int]]], charsets: tuple[CharSet, ...]):
        self.trans = trans
        self.charsets = charsets
        # per set of usable bytes, the fewest of them that spell each label (see
        # regexlm.automata.lazy.costs_of_labels); None until asked for
        self.costs: dict[bytes, list[int]] | None = None
        bounds = set()
        for row in trans:
            for lo, hi, _ in row:
                bounds.add(lo)
                bounds.add(hi + 1)
        self.boundaries = frozenset(bounds)

    @property
    def num_states(self) -> int:
        return len(self.trans)

    def accepts(self, data: bytes) -> bool:
        """Whether ``data`` is exactly one encoded member of some set (used by tests)."""
        u = 0
        for i, b in enumerate(data):
            for lo, hi, t in self.trans[u]:
                if lo <= b <= hi:
                    if t < 0:
                        return i == len(data) - 1
                    u = t
                    break
            else:
                return False
        return False


def _split(ranges: CharSet, shift: int) -> list[tuple[int, CharSet]]:
    """Split relative ranges by their bits above ``shift``: [(child index, child-relative ranges)]."""
    size = 1 << shift
    mask = size - 1
    children: dict[int, list[tuple[int, int]]] = {}
    for lo, hi in ranges:
        jlo, jhi = lo >> shift, hi >> shift
        if jlo == jhi:
            children.setdefault(jlo, []).append((lo & mask, hi & mask))
            continue
        children.setdefault(jlo, []).append((lo & mask, mask))
        for j in range(jlo + 1, jhi):
            children.setdefault(j, []).append((0, mask))
        children.setdefault(jhi, []).append((0, hi & mask))
    return [(j, tuple(children[j])) for j in sorted(children)]


def _merge_runs(pairs: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """[(byte, target)] sorted by byte -> [(lo, hi, target)] merging consecutive equal targets."""
    out: list[tuple[int, int, int]] = []
    for b, t in pairs:
        if out and out[-1][1] == b - 1 and out[-1][2] == t:
            out[-1] = (out[-1][0], b, t)
        else:
            out.append((b, b, t))
    return out


def _split_labelled(rels: tuple[CharSet, ...], shift: int) -> list[tuple[int, tuple]]:
    """Split each label's relative ranges by child: [(child index, per-label child ranges)]."""
    per_child: dict[int, list[CharSet]] = {}
    for label, rel in enumerate(rels):
        for j, child in _split(rel, shift):
            per_child.setdefault(j, [()] * len(rels))[label] = child
    return [(j, tuple(per_child[j])) for j in sorted(per_child)]


def final(label: int) -> int:
    """Transition target meaning "a whole character of set ``label`` has been read"."""
    return -1 - label


def _node(k: int, rels: tuple, trans: list, memo: dict) -> int:
    """The state of :func:`utf8_partition_automaton` reading ``k`` more continuation bytes whose
    6k bits select a label via ``rels`` (a module function, not a closure: a recursive closure
    holds itself in a reference cycle that only the collector frees)."""
    key = (k, rels)
    sid = memo.get(key)
    if sid is not None:
        return sid
    sid = len(trans)
    trans.append([])
    memo[key] = sid
    pairs = []
    for j, children in _split_labelled(rels, 6 * (k - 1)):
        if k == 1:  # the sets are disjoint: exactly one label holds this byte
            label = next(i for i, child in enumerate(children) if child)
            pairs.append((0x80 | j, final(label)))
        else:
            pairs.append((0x80 | j, _node(k - 1, children, trans, memo)))
    trans[sid] = _merge_runs(pairs)
    return sid


@lru_cache(maxsize=2048)
def utf8_partition_automaton(charsets: tuple[CharSet, ...]) -> Utf8Automaton:
    """One byte DFA for several disjoint sets, its final transitions labelled by set.

    Reading a character of ``charsets[i]`` ends with a transition to :func:`final` ``(i)``. The
    sets share every state until the last byte tells them apart, so splitting a class into
    parts (as assertions do: ``.`` into word and non-word characters) does not multiply the
    states inside a character.
    """
    if all(not chars or chars[-1][1] < 0x80 for chars in charsets):
        # ASCII alone (most classes of everyday patterns): one byte each, one state
        start = [(lo, hi, final(label)) for label, chars in enumerate(charsets) for lo, hi in chars]
        start.sort()
        return Utf8Automaton([start], charsets)
    charsets = tuple(cs.subtract(c, cs.SURROGATES) for c in charsets)
    trans: list[list[tuple[int, int, int]]] = [[]]
    memo: dict[tuple[int, tuple], int] = {}
    start: list[tuple[int, int, int]] = []
    for label, chars in enumerate(charsets):
        for lo, hi in cs.intersect(chars, ((0, 0x7F),)):
            start.append((lo, hi, final(label)))
    for first, last, lead, k in _LENGTHS:
        parts = tuple(cs.intersect(chars, ((first, last),)) for chars in charsets)
        if not any(parts):
            continue
        pairs = [
            (lead | j, _node(k, children, trans, memo))
            for j, children in _split_labelled(parts, 6 * k)
        ]
        start.extend(_merge_runs(pairs))
    start.sort()
    trans[0] = start
    return Utf8Automaton(trans, charsets)


def utf8_automaton(charset: CharSet) -> Utf8Automaton:
    """The minimal byte DFA for the UTF-8 encodings of ``charset`` (surrogates excluded).

    Its only final transition target is :data:`FINAL`.
    """
    return utf8_partition_automaton((charset,))
