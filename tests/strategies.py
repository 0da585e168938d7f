"""Hypothesis strategies for Python regular expressions and strings to test them on.

``regex_patterns()`` draws pattern strings that cover every construct the automata layer
supports (literals, escapes, classes and negated classes, ``\\d \\w \\s`` and their negations,
``.``, alternation, all group kinds that keep the language, greedy and lazy quantifiers including
``{m,n}``, global and scoped flags ``i s m a x u``, anchors ``^ $ \\A \\Z \\b \\B``) over a small
alphabet: a little ASCII plus characters that test UTF-8 and case folding ('é', 'ß', '日', '😀',
the Kelvin sign, long s, dotted capital I).

Each drawn pattern comes with a sampler that builds strings following the pattern's structure
(likely matches, though assertions and flags can make them miss), so ``pattern_cases()`` can
produce, per pattern, a mix of structured samples, their mutations and random strings. Python's
``re`` decides which of them match; the strategies only aim to hit interesting strings.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import strategies as st

ASCII_ALPHABET = "abAB01_ -.\n"
MULTIBYTE_ALPHABET = "éß日😀\u212a\u017f\u0130ks"
ALPHABET = ASCII_ALPHABET + MULTIBYTE_ALPHABET

Sampler = Callable[[random.Random], str]


@dataclass(frozen=True)
class Rx:
    """A pattern fragment and a function drawing strings that follow its structure."""

    source: str
    sample: Sampler
    atom: bool = True  # may take a quantifier directly


def _pick(chars: str) -> Sampler:
    return lambda r: r.choice(chars)


def _case_variants(c: str) -> Sampler:
    variants = {c, c.lower(), c.upper(), c.swapcase()}
    variants = [v for v in variants if len(v) == 1]
    return lambda r: r.choice(variants)


@st.composite
def _literal(draw, alphabet: str) -> Rx:
    c = draw(st.sampled_from(alphabet))
    src = re.escape(c)
    if c == " ":  # stays a literal under (?x)
        src = "\\ "
    elif c == "\n":
        src = draw(st.sampled_from(["\\n", "\\x0a", "\\012"]))
    return Rx(src, _case_variants(c))


_ESCAPES = {
    "\\d": "0123456789",
    "\\D": "abAB_ -.\néß日",
    "\\w": "abAB01_éß日\u212a\u017f",
    "\\W": " -.\n😀",
    "\\s": " \n\t",
    "\\S": "ab0-é😀",
}


def _class_item_source(c: str) -> str:
    if c in "\\]^-[ ":
        return "\\" + c
    if c == "\n":
        return "\\n"
    return c


@st.composite
def _char_class(draw, alphabet: str, unicode_classes: bool) -> Rx:
    negate = draw(st.booleans())
    parts = []
    members = ""
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["char", "range", "escape"] if unicode_classes else ["char", "range"])
        )
        if kind == "char":
            c = draw(st.sampled_from(alphabet))
            parts.append(_class_item_source(c))
            members += c
        elif kind == "range":
            a, b = sorted(draw(st.lists(st.sampled_from(alphabet), min_size=2, max_size=2)))
            parts.append(_class_item_source(a) + "-" + _class_item_source(b))
            members += "".join(c for c in alphabet if a <= c <= b)
        else:
            e = draw(st.sampled_from(sorted(_ESCAPES)))
            parts.append(e)
            members += _ESCAPES[e]
    src = "[" + ("^" if negate else "") + "".join(parts) + "]"
    pool = alphabet if negate or not members else members + alphabet[:2]
    return Rx(src, _pick(pool))


@st.composite
def _atom(draw, alphabet: str, unicode_classes: bool) -> Rx:
    kinds = ["literal", "literal", "class", "dot"]
    if unicode_classes:
        kinds.append("escape")
    kind = draw(st.sampled_from(kinds))
    if kind == "literal":
        return draw(_literal(alphabet))
    if kind == "class":
        return draw(_char_class(alphabet, unicode_classes))
    if kind == "dot":
        return Rx(".", _pick(alphabet))
    e = draw(st.sampled_from(sorted(_ESCAPES)))
    return Rx(e, _pick(_ESCAPES[e] + alphabet[:3]))


_ANCHORS = ["^", "$", "\\A", "\\Z", "\\b", "\\B"]


@st.composite
def _anchor(draw) -> Rx:
    a = draw(st.sampled_from(_ANCHORS))
    return Rx(a, lambda r: r.choice(["", "", "\n"]), atom=False)


@st.composite
def _quantified(draw, inner: Rx) -> Rx:
    q = draw(st.sampled_from(["*", "+", "?", "{m}", "{m,}", "{m,n}", "{,n}"]))
    m = draw(st.integers(0, 3))
    n = m + draw(st.integers(0, 3))
    lo, hi = {
        "*": (0, 3),
        "+": (1, 4),
        "?": (0, 1),
        "{m}": (m, m),
        "{m,}": (m, m + 3),
        "{m,n}": (m, n),
        "{,n}": (0, n),
    }[q]
    src = q.replace("m", str(m)).replace("n", str(n))
    if draw(st.integers(0, 3)) == 0:
        src += "?"  # lazy

    def sample(r: random.Random) -> str:
        return "".join(inner.sample(r) for _ in range(r.randint(lo, hi)))

    return Rx(inner.source + src, sample, atom=False)


_SCOPED_FLAGS = ["i", "s", "m", "a", "x", "u", "-i", "-s", "-m", "i-s", "s-i", "ai", "-x"]


@st.composite
def _group(draw, inner: Rx, counter: list[int]) -> Rx:
    kind = draw(st.sampled_from(["capture", "noncapture", "named", "flags"]))
    if kind == "capture":
        src = "(" + inner.source + ")"
    elif kind == "noncapture":
        src = "(?:" + inner.source + ")"
    elif kind == "named":
        counter[0] += 1
        src = f"(?P<g{counter[0]}>" + inner.source + ")"
    else:
        src = "(?" + draw(st.sampled_from(_SCOPED_FLAGS)) + ":" + inner.source + ")"
    return Rx(src, inner.sample)


def _concat(parts: list[Rx]) -> Rx:
    src = "".join(p.source for p in parts)
    return Rx(
        src, lambda r: "".join(p.sample(r) for p in parts), atom=len(parts) == 1 and parts[0].atom
    )


def _alternation(parts: list[Rx]) -> Rx:
    src = "|".join(p.source for p in parts)
    return Rx(src, lambda r: r.choice(parts).sample(r), atom=False)


# An unbounded repeat in a pattern's source (conservative: a quoted "*" or "+" counts too).
_UNBOUNDED = re.compile(r"[*+]|\{\d*,\}")


@st.composite
def _node(
    draw, depth: int, alphabet: str, unicode_classes: bool, anchors: bool, counter, nested: bool
) -> Rx:
    choices = ["atom", "atom", "atom"]
    if anchors:
        choices.append("anchor")
    if depth > 0:
        choices += ["concat", "concat", "alt", "group", "quant", "quant"]
    kind = draw(st.sampled_from(choices))
    sub = lambda: _node(depth - 1, alphabet, unicode_classes, anchors, counter, nested)  # noqa: E731
    if kind == "atom":
        return draw(_atom(alphabet, unicode_classes))
    if kind == "anchor":
        return draw(_anchor())
    if kind == "concat":
        return _concat(draw(st.lists(sub(), min_size=2, max_size=4)))
    if kind == "alt":
        parts = draw(st.lists(sub(), min_size=2, max_size=3))
        return _alternation(parts)
    if kind == "group":
        return draw(_group(draw(sub()), counter))
    inner = draw(sub())
    if not inner.atom:
        inner = Rx("(?:" + inner.source + ")", inner.sample)
    if inner.source in _ANCHORS:
        inner = Rx("(?:" + inner.source + ")", inner.sample)
    if not nested and _UNBOUNDED.search(inner.source):
        return inner  # a repeat of a repeat: re may backtrack exponentially on long texts
    return draw(_quantified(inner))


_GLOBAL_FLAGS = [
    "",
    "",
    "",
    "(?i)",
    "(?s)",
    "(?m)",
    "(?a)",
    "(?x)",
    "(?u)",
    "(?im)",
    "(?si)",
    "(?ai)",
    "(?ms)",
]


@st.composite
def regex_cases(
    draw,
    *,
    max_depth: int = 3,
    alphabet: str = ALPHABET,
    unicode_classes: bool = True,
    anchors: bool = True,
    flags: bool = True,
    case_insensitive: bool = True,
    nested_repeats: bool = True,
) -> Rx:
    """A pattern with its structural sampler (see :class:`Rx`).

    ``nested_repeats=False`` never repeats a part that has an unbounded repeat of its own, such
    as ``(?:\\D+)*``: ``re`` takes exponential time to reject long texts against those, so
    tests whose texts are whole model outputs (not the short samples) leave them out."""
    counter = [0]
    node = draw(_node(max_depth, alphabet, unicode_classes, anchors, counter, nested_repeats))
    prefix = draw(st.sampled_from(_GLOBAL_FLAGS)) if flags else ""
    src = prefix + node.source
    if not case_insensitive:
        src = src.replace("(?i)", "").replace("(?si)", "(?s)").replace("(?ai)", "(?a)")
        src = src.replace("(?im)", "(?m)").replace("(?i:", "(?:").replace("(?ai:", "(?a:")
        src = src.replace("(?i-s:", "(?-s:").replace("(?s-i:", "(?s:")
    return Rx(src, node.sample, atom=False)


def regex_patterns(**kwargs) -> st.SearchStrategy[str]:
    """Pattern strings; keyword arguments as :func:`regex_cases`."""
    return regex_cases(**kwargs).map(lambda rx: rx.source)


def mutate(s: str, r: random.Random, alphabet: str = ALPHABET) -> str:
    """Insert, delete or replace one character."""
    op = r.randrange(3)
    i = r.randint(0, len(s))
    c = r.choice(alphabet)
    if op == 0 or not s:
        return s[:i] + c + s[i:]
    i = min(i, len(s) - 1)
    if op == 1:
        return s[:i] + s[i + 1 :]
    return s[:i] + c + s[i + 1 :]


MAX_SAMPLE_LEN = 12  # keeps re's backtracking on nested repeats cheap


def candidate_strings(rx: Rx, r: random.Random, n: int = 24, alphabet: str = ALPHABET) -> list[str]:
    """Strings to test a pattern on: samples of its structure, their mutations, random strings."""
    out = [""]
    for _ in range(n // 3):
        s = rx.sample(r)[:MAX_SAMPLE_LEN]
        out.append(s)
        out.append(mutate(s, r, alphabet))
        out.append("".join(r.choice(alphabet) for _ in range(r.randint(0, 6))))
    return out


@st.composite
def pattern_cases(draw, n: int = 24, **kwargs) -> tuple[str, list[str]]:
    """``(pattern, candidate strings)``; keyword arguments as :func:`regex_cases`."""
    rx = draw(regex_cases(**kwargs))
    r = draw(st.randoms(use_true_random=False))
    return rx.source, candidate_strings(rx, r, n, kwargs.get("alphabet", ALPHABET))
