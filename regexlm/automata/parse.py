"""From a pattern string to the small syntax tree the automaton builder works on.

Parsing is Python's: ``re._parser`` (``sre_parse`` before 3.11) reads the pattern, so every
syntax error is Python's own message at Python's own position, and ``(?x)`` comments, escapes,
named groups and the rest are read exactly as ``re`` reads them.

The parser's tree still carries flags (``(?i)``, ``(?s)``, ``(?m)``, ``(?a)``) that ``re``'s
compiler applies later. This module applies them while converting, so the tree it returns is
flag-free and made of five node kinds only:

* :class:`Chars` - one character from a code-point set (literals, classes, ``.``, ``\\w`` ...,
  with case folding already applied);
* :class:`Concat`, :class:`Alt`, :class:`Repeat` - the regular operators (lazy repeats are
  repeats: under fullmatch laziness does not change which strings match);
* :class:`Look` - a zero-width assertion (``^ $ \\A \\Z \\b \\B``), resolved by the NFA layer.

Groups vanish (they do not change the language). Constructs a finite automaton cannot express
(backreferences, lookaround, conditionals) and those whose meaning depends on backtracking order
(atomic groups, possessive quantifiers) raise :class:`~regexlm.errors.UnsupportedRegexError`
naming the construct and its position in the pattern.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass

from regexlm.automata import charset as cs
from regexlm.automata import unicode as uni
from regexlm.automata.charset import CharSet
from regexlm.errors import PatternTooComplexError, RegexSyntaxError, UnsupportedRegexError

try:  # Python >= 3.11
    from re import _constants as C
    from re import _parser
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as C  # type: ignore[no-redef]
    import sre_parse as _parser  # type: ignore[no-redef]

MAX_DEPTH = 200  # nesting depth of groups/repeats we accept (Python's parser recurses too)
SHARED_CLASSES = 64  # distinct character classes kept for sharing between patterns

_IGNORECASE = C.SRE_FLAG_IGNORECASE
_DOTALL = C.SRE_FLAG_DOTALL
_MULTILINE = C.SRE_FLAG_MULTILINE
_UNICODE = C.SRE_FLAG_UNICODE
_TYPE_FLAGS = C.SRE_FLAG_ASCII | C.SRE_FLAG_LOCALE | C.SRE_FLAG_UNICODE

_ATOMIC_GROUP = getattr(C, "ATOMIC_GROUP", None)
_POSSESSIVE_REPEAT = getattr(C, "POSSESSIVE_REPEAT", None)


# ---------------------------------------------------------------------------------------------
# The tree


@dataclass(frozen=True)
class Chars:
    """Exactly one character from ``chars``."""

    chars: CharSet


@dataclass(frozen=True)
class Concat:
    items: tuple


@dataclass(frozen=True)
class Alt:
    items: tuple


@dataclass(frozen=True)
class Repeat:
    """``item`` repeated ``min`` to ``max`` times (``max`` None: unbounded)."""

    item: object
    min: int
    max: int | None


@dataclass(frozen=True)
class Look:
    """A zero-width assertion; ``kind`` is one of :data:`LOOK_KINDS`."""

    kind: str


LOOK_KINDS = (
    "start_text",  # \A, ^ without (?m)
    "start_line",  # ^ under (?m)
    "end_text",  # \Z
    "end_line",  # $ under (?m): end, or before any '\n'
    "end_text_nl",  # $ without (?m): end, or before a '\n' that ends the text
    "word_unicode",  # \b
    "not_word_unicode",  # \B
    "word_ascii",  # \b under (?a)
    "not_word_ascii",  # \B under (?a)
)

EMPTY = Concat(())


# ---------------------------------------------------------------------------------------------
# Unsupported constructs and where they are


_UNSUPPORTED_SYNTAX = (
    ("(?<=", "lookbehind"),
    ("(?<!", "lookbehind"),
    ("(?=", "lookahead"),
    ("(?!", "lookahead"),
    ("(?(", "conditional"),
    ("(?>", "atomic group"),
    ("(?P=", "backreference"),
)


def _scan_unsupported(pattern: str) -> list[tuple[str, int]]:
    """(construct, position) for each unsupported construct's syntax, in pattern order.

    A light scan: it skips escapes and character classes. It is only used to report positions;
    whether a construct is present is decided from the parser's tree.
    """
    found = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if not in_class and i + 1 < n and pattern[i + 1].isdigit() and pattern[i + 1] != "0":
                found.append(("backreference", i))
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
            i += 1
            continue
        if ch == "[":
            in_class = True
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1
            continue
        if ch == "(":
            for syntax, name in _UNSUPPORTED_SYNTAX:
                if pattern.startswith(syntax, i):
                    found.append((name, i))
                    break
        elif ch == "+" and i > 0 and pattern[i - 1] in "*+?}" and _quantifier_before(pattern, i):
            found.append(("possessive quantifier", i - 1))
        i += 1
    return found


def _quantifier_before(pattern: str, i: int) -> bool:
    """Whether ``pattern[i - 1]`` (one of ``*+?}``) is a quantifier, not an escaped literal."""
    backslashes = 0
    k = i - 2
    while k >= 0 and pattern[k] == "\\":
        backslashes += 1
        k -= 1
    return backslashes % 2 == 0


def _unsupported_in_tree(sub, found: set) -> None:
    stack = [sub]
    while stack:
        node = stack.pop()
        for op, av in node.data if hasattr(node, "data") else node:
            if op is C.GROUPREF:
                found.add("backreference")
            elif op is C.GROUPREF_EXISTS:
                found.add("conditional")
                stack.append(av[1])
                if av[2] is not None:
                    stack.append(av[2])
            elif op is C.ASSERT or op is C.ASSERT_NOT:
                found.add("lookahead" if av[0] >= 0 else "lookbehind")
            elif _ATOMIC_GROUP is not None and op is _ATOMIC_GROUP:
                found.add("atomic group")
                stack.append(av)
            elif _POSSESSIVE_REPEAT is not None and op is _POSSESSIVE_REPEAT:
                found.add("possessive quantifier")
                stack.append(av[2])
            elif op is C.SUBPATTERN:
                stack.append(av[3])
            elif op is C.MAX_REPEAT or op is C.MIN_REPEAT:
                stack.append(av[2])
            elif op is C.BRANCH:
                stack.extend(av[1])


def _raise_unsupported(pattern: str, kinds: set) -> None:
    # A pattern Python itself refuses to compile (e.g. a variable-width lookbehind) is a syntax
    # error, not an unsupported construct.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(pattern)
    except re.error as e:
        raise RegexSyntaxError(e.msg, pattern, e.pos) from None
    for name, pos in _scan_unsupported(pattern):
        if name in kinds:
            raise UnsupportedRegexError(name, pos, pattern)
    order = (
        "backreference",
        "lookahead",
        "lookbehind",
        "conditional",
        "atomic group",
        "possessive quantifier",
    )
    name = next(k for k in order if k in kinds)
    raise UnsupportedRegexError(name, None, pattern)


# ---------------------------------------------------------------------------------------------
# Conversion


def _combine_flags(flags: int, add: int, delete: int) -> int:
    # As re's compiler: a scoped type flag ((?a) / (?u)) replaces the inherited one.
    if add & _TYPE_FLAGS:
        flags &= ~_TYPE_FLAGS
    return (flags | add) & ~delete


def _literal(c: int, flags: int) -> CharSet:
    if flags & _IGNORECASE:
        return uni.fold_literal(c, bool(flags & _UNICODE))
    return ((c, c),)


def _not_literal(c: int, flags: int) -> CharSet:
    if flags & _IGNORECASE:
        return uni.fold_not_literal(c, bool(flags & _UNICODE))
    return cs.complement(((c, c),))


def _class(items: list, flags: int) -> CharSet:
    """The set of a ``[...]`` class (or ``\\d``, ``\\w``, ... alone), remembered by its items
    and flags: a pattern repeats its classes (``\\d{4}-\\d{2}``) and patterns share them, and
    sorting the ranges of a Unicode category again costs more than the rest of a small pattern's
    parse."""
    return _class_of(tuple(items), flags)


@functools.lru_cache(maxsize=SHARED_CLASSES)
def _class_of(items: tuple, flags: int) -> CharSet:
    unicode = bool(flags & _UNICODE)
    negate = False
    kept = []
    ranges: list[tuple[int, int]] = []
    for op, av in items:
        if op is C.NEGATE:
            negate = True
            continue
        kept.append((op, av))
        if op is C.LITERAL:
            ranges.append((av, av))
        elif op is C.RANGE:
            ranges.append((av[0], av[1]))
        elif op is C.CATEGORY:
            ranges.extend(uni.category(av, unicode))
        else:  # pragma: no cover - not produced by the parser inside a class
            raise UnsupportedRegexError(f"class item {op}", None)
    plain = cs.canonical(ranges)
    if negate:
        plain = cs.complement(plain)
    if flags & _IGNORECASE:
        return _shared(uni.fold_class(tuple(kept), negate, plain, unicode))
    return _shared(plain)


@functools.lru_cache(maxsize=SHARED_CLASSES)
def _shared(chars: CharSet) -> CharSet:
    """The first of the equal character sets parsed recently: a class such as ``\\w`` (734
    ranges, about 120 KB of tuples) is held once by every automaton that reads it, not once a
    pattern."""
    return chars


def _dot(flags: int) -> CharSet:
    return cs.ALL if flags & _DOTALL else cs.complement(uni.NEWLINE)


_AT_KINDS = {
    "AT_BEGINNING_STRING": "start_text",
    "AT_END_STRING": "end_text",
}


def _at(code, flags: int) -> Look:
    name = code.name
    if name == "AT_BEGINNING":
        return Look("start_line" if flags & _MULTILINE else "start_text")
    if name == "AT_END":
        return Look("end_line" if flags & _MULTILINE else "end_text_nl")
    if name == "AT_BOUNDARY":
        return Look("word_unicode" if flags & _UNICODE else "word_ascii")
    if name == "AT_NON_BOUNDARY":
        return Look("not_word_unicode" if flags & _UNICODE else "not_word_ascii")
    if name in _AT_KINDS:
        return Look(_AT_KINDS[name])
    raise UnsupportedRegexError(f"assertion {name}", None)  # pragma: no cover


def _alternation(branches: tuple):
    """The alternation of ``branches``, those that read one character each merged into one
    set: the same language from a smaller automaton (``(.|\\n){0,500}`` repeats one state, not
    five; ``re``'s parser merges single literals itself, not ``.`` or classes)."""
    singles = [b.chars for b in branches if isinstance(b, Chars)]
    if len(singles) < 2:
        return Alt(branches)
    merged = singles[0]
    for chars in singles[1:]:
        merged = cs.union(merged, chars)
    rest = tuple(b for b in branches if not isinstance(b, Chars))
    return Alt((Chars(merged), *rest)) if rest else Chars(merged)


def _convert(sub, flags: int, depth: int):
    if depth > MAX_DEPTH:
        raise PatternTooComplexError(
            f"pattern nesting depth exceeds the limit of {MAX_DEPTH}", limit="nesting"
        )
    items = []
    for op, av in sub.data if hasattr(sub, "data") else sub:
        if op is C.LITERAL:
            items.append(Chars(_literal(av, flags)))
        elif op is C.NOT_LITERAL:
            items.append(Chars(_not_literal(av, flags)))
        elif op is C.ANY:
            items.append(Chars(_dot(flags)))
        elif op is C.IN:
            items.append(Chars(_class(av, flags)))
        elif op is C.BRANCH:
            items.append(_alternation(tuple(_convert(b, flags, depth + 1) for b in av[1])))
        elif op is C.SUBPATTERN:
            _group, add, delete, p = av
            items.append(_convert(p, _combine_flags(flags, add, delete), depth + 1))
        elif op is C.MAX_REPEAT or op is C.MIN_REPEAT:
            lo, hi, p = av
            items.append(
                Repeat(_convert(p, flags, depth + 1), lo, None if hi == C.MAXREPEAT else hi)
            )
        elif op is C.AT:
            items.append(_at(av, flags))
        else:  # pragma: no cover - unsupported ops are caught before conversion
            raise UnsupportedRegexError(str(op), None)
    if len(items) == 1:
        return items[0]
    return Concat(tuple(items))


def parse(pattern: str):
    """Parse ``pattern`` with Python's parser and convert it to our tree (flags applied)."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be str, not {type(pattern).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = _parser.parse(pattern, 0)
    except re.error as e:
        raise RegexSyntaxError(e.msg, pattern, e.pos) from None
    except (ValueError, OverflowError) as e:
        # e.g. "the repetition number is too large" for a{4294967295}: re refuses it as well.
        raise RegexSyntaxError(str(e), pattern, None) from None
    except RecursionError:
        raise PatternTooComplexError(
            "pattern nesting is too deep for Python's parser", limit="nesting"
        ) from None
    kinds: set = set()
    _unsupported_in_tree(tree, kinds)
    if kinds:
        _raise_unsupported(pattern, kinds)
    return _convert(tree, tree.state.flags, 0)
