"""A brute-force mask oracle that shares nothing with regexlm's automata.

At a text reached by a walk (the bytes of the tokens drawn so far), a token is allowed iff the
text followed by the token's bytes can still be extended to a match: the ``regex`` package's
``fullmatch(..., partial=True)`` decides that on the decoded string, token by token over the
whole vocabulary. End-of-sequence is allowed iff Python's ``re.fullmatch`` matches the text.

Python's ``re`` is the semantics, and ``regex``'s Unicode ``\\w \\d \\s`` are not ``re``'s (``²``,
``\\x1e``). So before it reaches ``regex`` the pattern's ``\\w \\W \\d \\D \\s \\S`` are spelled
out as the code point ranges ``re`` itself matches, found by asking ``re`` about every code
point; the rest of the syntax is common to both.

Bytes that end inside a character cannot be judged as text: a token whose bytes leave the text
with an unfinished character is *unchecked* unless the finished part is already not viable
(then no completion helps: viability is closed under prefixes). Callers compare masks only where
a token is checked.

``regex`` backtracks, and nested repeats such as ``(\\w+\\s?){1,10}`` take exponential time on
some texts: each call has a time limit, a token whose call runs past it is unchecked too, and
:meth:`TextOracle.mask` stops with :class:`OutOfTime` past a caller's deadline.

Text that can be extended to a match can be extended by single-byte tokens when every byte is a
token of its own (byte-level and byte-fallback vocabularies), so "viable" and "some token path
completes a match" agree. :class:`TextOracle` checks that for printable ASCII, tab, newline,
carriage return and every byte of characters up to U+3FFFF; a vocabulary may lack a few other
control bytes and lead bytes (SmolLM2 has no ``\x04``, no ``\xf1``), which no benchmark
pattern needs.
"""

from __future__ import annotations

import codecs
import functools
import re
import time

import numpy as np
import regex

_ESCAPES = {"w": r"\w", "d": r"\d", "s": r"\s"}
CALL_SECONDS = 0.02  # the time limit of one partial match


class OutOfTime(Exception):
    """The caller's deadline passed before a mask was complete."""


@functools.cache
def _ranges(letter: str, negated: bool) -> str:
    """The body of a character class (no brackets) matching what ``re``'s ``\\<letter>``
    matches (or does not, ``negated``), as ``\\U`` ranges."""
    test = re.compile(_ESCAPES[letter]).fullmatch
    parts, start = [], None
    for cp in range(0x110000 + 1):
        inside = cp <= 0x10FFFF and (test(chr(cp)) is not None) != negated
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            end = cp - 1
            parts.append(f"\\U{start:08x}" if start == end else f"\\U{start:08x}-\\U{end:08x}")
            start = None
    return "".join(parts)


def for_regex_module(pattern: str) -> str:
    """``pattern`` with ``re``'s own ``\\w \\W \\d \\D \\s \\S`` spelled out for ``regex``.

    Raises ValueError for the ASCII and locale flags, which change those escapes' meaning."""
    if re.search(r"\(\?[a-zA-Z]*[aL]", pattern):
        raise ValueError("the ASCII and locale flags are not spelled out")
    out, i, in_class, class_from = [], 0, False, -1
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            letter = pattern[i + 1]
            if letter.lower() in _ESCAPES:
                body = _ranges(letter.lower(), letter.isupper())
                out.append(body if in_class else f"[{body}]")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            # a ']' first in a class (after '[' or '[^') is a literal
            if c == "]" and i > class_from:
                in_class = False
        elif c == "[":
            in_class = True
            class_from = i + 1
            if pattern[i + 1 : i + 2] == "^":
                class_from += 1
        out.append(c)
        i += 1
    return "".join(out)


def _split_utf8(data: bytes) -> tuple[str, bytes] | None:
    """``(finished text, bytes of an unfinished character)``, None when ``data`` is not the
    start of any UTF-8 text."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        text = decoder.decode(data, final=False)
    except UnicodeDecodeError:
        return None
    return text, decoder.getstate()[0]


class TextOracle:
    """Masks of one pattern over one vocabulary (``token_bytes``, ``usable`` bool[V], the
    end-of-sequence ids)."""

    def __init__(self, pattern: str, token_bytes, usable: np.ndarray, eos_ids):
        self.pattern = pattern
        self.viable_re = regex.compile(for_regex_module(pattern))
        self.token_bytes = list(token_bytes)
        self.eos_ids = list(eos_ids)
        eos = np.zeros(len(self.token_bytes), dtype=bool)
        eos[self.eos_ids] = True
        self.ids = np.flatnonzero(np.asarray(usable, dtype=bool) & ~eos)
        single = {self.token_bytes[t] for t in self.ids if len(self.token_bytes[t]) == 1}
        needed = [*range(0x20, 0x7F), 0x09, 0x0A, 0x0D, *range(0x80, 0xC0), *range(0xC2, 0xF1)]
        missing = [b for b in needed if bytes([b]) not in single]
        if missing:
            raise ValueError(f"bytes {missing[:8]} are no token of their own")
        # tokens that are whole UTF-8 text on their own, decoded once and grouped by their first
        # character: when the text followed by that character is not viable, neither is any of
        # them (viability is closed under prefixes); the rest are judged one by one
        self.text_of: dict[int, str] = {}
        by_first: dict[str, list[int]] = {}
        self.partial_ids = []
        for t in self.ids.tolist():
            try:
                text = self.token_bytes[t].decode("utf-8")
            except UnicodeDecodeError:
                self.partial_ids.append(t)
                continue
            self.text_of[t] = text
            by_first.setdefault(text[:1], []).append(t)
        self.by_first = {c: np.asarray(ids) for c, ids in by_first.items()}

    def mask(self, data: bytes, deadline: float = float("inf")) -> tuple[np.ndarray, np.ndarray]:
        """``(allowed bool[V], checked bool[V])`` after the text ``data``; OutOfTime when
        ``time.monotonic()`` passes ``deadline`` first."""

        def viable(text: str) -> bool | None:
            """Whether ``text`` can be extended to a match; None when the call ran out of time."""
            if time.monotonic() > deadline:
                raise OutOfTime
            try:
                found = self.viable_re.fullmatch(text, partial=True, timeout=CALL_SECONDS)
            except TimeoutError:
                return None
            return found is not None

        size = len(self.token_bytes)
        allowed = np.zeros(size, dtype=bool)
        checked = np.zeros(size, dtype=bool)
        split = _split_utf8(data)
        if split is None:  # not text: nothing follows, nothing ends it
            checked[self.ids] = True
            checked[self.eos_ids] = True
            return allowed, checked
        text, pending = split
        checked[self.eos_ids] = True
        allowed[self.eos_ids] = not pending and re.fullmatch(self.pattern, text) is not None
        one_by_one = self.partial_ids
        if pending:
            one_by_one = self.ids.tolist()
        else:
            for first, ids in self.by_first.items():
                head = viable(text + first)
                if head is False:
                    checked[ids] = True
                elif head:
                    for t in ids.tolist():
                        verdict = viable(text + self.text_of[t])
                        checked[t] = verdict is not None
                        allowed[t] = bool(verdict)
        for t in one_by_one:
            rest = _split_utf8(pending + self.token_bytes[t])
            if rest is None:
                checked[t] = True
                continue
            finished, unfinished = rest
            verdict = viable(text + finished)
            if verdict is False:
                checked[t] = True
            elif verdict and not unfinished:
                checked[t] = allowed[t] = True
        return allowed, checked
