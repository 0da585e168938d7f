"""Python's character classes and case folding, read off Python's own ``re``.

The meaning of ``\\w``, ``\\d``, ``\\s`` and of ``(?i)`` is whatever the running Python's ``re``
says it is: its Unicode database changes between Python releases, and its case-insensitive
matching has quirks (the Kelvin sign 'K' matches 'k', 'ſ' matches 's', 'İ' matches 'i', a class
is compared on the lowercased character while a literal is not quite). Rather than re-deriving
those rules, this module *asks* ``re``:

* Category tables. A string holding every code point once is scanned with ``re.finditer`` for
  runs of ``\\w`` (``\\d``, ``\\s``); each run is a range of the set. That is one pass of C code
  per category, done lazily once per process and cached.

* Case folding. Under ``(?i)`` only a small set of characters can behave differently from the
  case-sensitive reading: the characters Python considers cased, the lowercase forms they map to,
  and the extra equivalences of ``re._casefix``. Call that set ``Q`` (a few thousand characters).
  For any other character ``ch``, lowercasing and uppercasing are the identity, so ``ch`` matches
  a class under ``(?i)`` exactly when it matches without the flag. For the characters of ``Q`` we
  compile the class (or literal) with ``re`` itself and scan a string holding ``Q`` once. The
  result is exact by construction and costs a fraction of a millisecond; it is cached per class.

ASCII versions (under ``(?a)``) are fixed tables.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

from regexlm.automata import charset as cs
from regexlm.automata.charset import CharSet

try:  # Python >= 3.11
    from re import _constants as _sre_constants
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre_constants  # type: ignore[no-redef]

import _sre

C = _sre_constants

ASCII_DIGIT: CharSet = ((0x30, 0x39),)
ASCII_SPACE: CharSet = ((0x09, 0x0D), (0x20, 0x20))
ASCII_WORD: CharSet = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
NEWLINE: CharSet = ((0x0A, 0x0A),)


@lru_cache(maxsize=1)
def _all_code_points() -> str:
    """One string holding every code point 0..0x10FFFF once, in order (surrogates included)."""
    import numpy as np

    # UTF-32 with surrogatepass decodes the lone surrogates too; far faster than ''.join(map(chr)).
    data = np.arange(0x110000, dtype="<u4").tobytes()
    return data.decode("utf-32-le", errors="surrogatepass")


def _ranges_of(pattern: str) -> CharSet:
    text = _all_code_points()
    return tuple((m.start(), m.end() - 1) for m in re.finditer(pattern, text))


@cache
def unicode_word() -> CharSet:
    """Code points matched by ``\\w`` in Unicode mode."""
    return _ranges_of(r"\w+")


@cache
def unicode_digit() -> CharSet:
    """Code points matched by ``\\d`` in Unicode mode."""
    return _ranges_of(r"\d+")


@cache
def unicode_space() -> CharSet:
    """Code points matched by ``\\s`` in Unicode mode."""
    return _ranges_of(r"\s+")


def category(code, unicode: bool) -> CharSet:
    """The code-point set of an ``re`` category opcode (``CATEGORY_DIGIT`` ...)."""
    if code is C.CATEGORY_DIGIT:
        return unicode_digit() if unicode else ASCII_DIGIT
    if code is C.CATEGORY_NOT_DIGIT:
        return cs.complement(unicode_digit() if unicode else ASCII_DIGIT)
    if code is C.CATEGORY_SPACE:
        return unicode_space() if unicode else ASCII_SPACE
    if code is C.CATEGORY_NOT_SPACE:
        return cs.complement(unicode_space() if unicode else ASCII_SPACE)
    if code is C.CATEGORY_WORD:
        return unicode_word() if unicode else ASCII_WORD
    if code is C.CATEGORY_NOT_WORD:
        return cs.complement(unicode_word() if unicode else ASCII_WORD)
    raise ValueError(f"unexpected category {code}")


_CATEGORY_SOURCE = {
    "CATEGORY_DIGIT": r"\d",
    "CATEGORY_NOT_DIGIT": r"\D",
    "CATEGORY_SPACE": r"\s",
    "CATEGORY_NOT_SPACE": r"\S",
    "CATEGORY_WORD": r"\w",
    "CATEGORY_NOT_WORD": r"\W",
}


def _esc(c: int) -> str:
    return f"\\U{c:08x}"


@lru_cache(maxsize=1)
def _case_sensitive_chars() -> tuple[CharSet, str]:
    """``Q``: every code point whose (?i) behaviour may differ from its plain one; and Q as a string."""
    chars = set()
    for c in range(0x110000):
        if _sre.unicode_iscased(c):
            chars.add(c)
            chars.add(_sre.unicode_tolower(c))
    try:
        from re import _casefix

        for k, vs in _casefix._EXTRA_CASES.items():
            chars.add(k)
            chars.update(vs)
    except ImportError:  # pragma: no cover - Python 3.10 keeps the table in sre_compile
        import sre_compile

        for k, vs in getattr(sre_compile, "_ignorecase_fixes", {}).items():
            chars.add(k)
            chars.update(vs)
    chars.discard(-1)
    ordered = sorted(chars)
    return cs.from_chars(ordered), "".join(map(chr, ordered))


def _fold_with_oracle(plain: CharSet, source: str) -> CharSet:
    """``plain`` outside Q, and inside Q exactly the characters ``re`` matches with ``source``."""
    q_set, q_text = _case_sensitive_chars()
    matched = [ord(m.group()) for m in re.finditer(source, q_text)]
    return cs.union(cs.subtract(plain, q_set), cs.from_chars(matched))


def _flag_prefix(unicode: bool) -> str:
    return "(?i)" if unicode else "(?ai)"


@lru_cache(maxsize=4096)
def fold_literal(c: int, unicode: bool) -> CharSet:
    """Characters matched by the single literal ``c`` under ``(?i)``."""
    return _fold_with_oracle(((c, c),), _flag_prefix(unicode) + _esc(c))


@lru_cache(maxsize=4096)
def fold_not_literal(c: int, unicode: bool) -> CharSet:
    """Characters matched by ``[^c]`` under ``(?i)``."""
    return _fold_with_oracle(cs.complement(((c, c),)), _flag_prefix(unicode) + "[^" + _esc(c) + "]")


def class_source(items: tuple, negate: bool) -> str:
    """Rebuild the source of a class from parser items ``(op, av)`` (without NEGATE)."""
    parts = []
    for op, av in items:
        if op is C.LITERAL:
            parts.append(_esc(av))
        elif op is C.RANGE:
            parts.append(_esc(av[0]) + "-" + _esc(av[1]))
        elif op is C.CATEGORY:
            parts.append(_CATEGORY_SOURCE[av.name])
        else:  # pragma: no cover - the parser emits nothing else inside a class
            raise ValueError(f"unexpected class item {op}")
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


@lru_cache(maxsize=4096)
def fold_class(items: tuple, negate: bool, plain: CharSet, unicode: bool) -> CharSet:
    """Characters matched by the class ``items`` (``plain`` without the flag) under ``(?i)``."""
    return _fold_with_oracle(plain, _flag_prefix(unicode) + class_source(items, negate))
