"""Sets of code points as sorted, disjoint, non-adjacent inclusive ranges.

Every character class in a pattern, from a single literal to ``\\w`` or ``[^a-f]``, ends up as a
set of Unicode code points. The sets we meet are small in *ranges* but can be huge in *members*
(``[^a]`` holds 1,114,111 code points in two ranges), so a set is stored as a tuple of
``(lo, hi)`` pairs, inclusive, sorted, with no two ranges overlapping or touching. That canonical
form makes equal sets equal tuples, so a set can key a cache (the UTF-8 compiler caches on it).

The operations here are the usual merge walks over two sorted range lists; each runs in time
linear in the number of ranges.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_CODE_POINT = 0x10FFFF

# A code-point set: ((lo, hi), ...) sorted, disjoint, non-adjacent, inclusive bounds.
CharSet = tuple[tuple[int, int], ...]

EMPTY: CharSet = ()
ALL: CharSet = ((0, MAX_CODE_POINT),)
SURROGATES: CharSet = ((0xD800, 0xDFFF),)


def canonical(ranges: Iterable[tuple[int, int]]) -> CharSet:
    """Sort and merge arbitrary (possibly overlapping) inclusive ranges into canonical form."""
    items = sorted(ranges)
    out: list[list[int]] = []
    for lo, hi in items:
        if lo > hi:
            continue
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1][1] = hi
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def from_chars(chars: Iterable[int]) -> CharSet:
    """The set of the given code points."""
    return canonical((c, c) for c in chars)


def union(a: CharSet, b: CharSet) -> CharSet:
    if not a:
        return b
    if not b:
        return a
    return canonical(a + b)


def complement(a: CharSet) -> CharSet:
    """All code points (0..0x10FFFF) not in ``a``."""
    out = []
    nxt = 0
    for lo, hi in a:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CODE_POINT:
        out.append((nxt, MAX_CODE_POINT))
    return tuple(out)


def intersect(a: CharSet, b: CharSet) -> CharSet:
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def subtract(a: CharSet, b: CharSet) -> CharSet:
    if not a or not b:
        return a
    return intersect(a, complement(b))


def contains(a: CharSet, c: int) -> bool:
    # Binary search over the range starts.
    lo, hi = 0, len(a)
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid][1] < c:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(a) and a[lo][0] <= c


def size(a: CharSet) -> int:
    """Number of code points in the set."""
    return sum(hi - lo + 1 for lo, hi in a)
