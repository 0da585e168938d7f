"""Conformance against CPython's own regular-expression test table (``test.re_tests``).

Each case there is a search test; here every case becomes fullmatch checks with ``re`` as the
oracle: the case's string, all of its substrings and the text ``re.search`` matches. Every pattern
Python rejects must raise :class:`RegexSyntaxError`; every pattern a DFA cannot express must raise
:class:`UnsupportedRegexError` naming the construct; every other pattern must agree with ``re``.
"""

import re

import pytest

from regexlm.automata import compile_regex
from regexlm.errors import RegexSyntaxError, UnsupportedRegexError

re_tests = pytest.importorskip("test.re_tests")

# Syntax that only the unsupported constructs use (checked on the pattern text).
UNSUPPORTED_SYNTAX = {
    "backreference": re.compile(r"\\[1-9]|\(\?P=|\\g<"),
    "lookahead": re.compile(r"\(\?[=!]"),
    "lookbehind": re.compile(r"\(\?<[=!]"),
    "conditional": re.compile(r"\(\?\("),
    "atomic group": re.compile(r"\(\?>"),
    "possessive quantifier": re.compile(r"[*+?}]\+"),
}

CASES = [case for case in re_tests.tests if isinstance(case[0], str)]


def _strings(pattern: re.Pattern, text: str) -> set[str]:
    out = {text}
    text = text[:40]
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            out.add(text[i:j])
    m = pattern.search(text)
    if m:
        out.add(m.group(0))
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: repr(c[0])[:60])
def test_re_tests_case(case):
    pattern, text, outcome = case[:3]
    try:
        compiled = re.compile(pattern)
    except re.error:
        assert outcome == re_tests.SYNTAX_ERROR or outcome is not None
        with pytest.raises(RegexSyntaxError):
            compile_regex(pattern)
        return
    try:
        dfa = compile_regex(pattern)
    except UnsupportedRegexError as e:
        assert e.construct in UNSUPPORTED_SYNTAX, e.construct
        assert UNSUPPORTED_SYNTAX[e.construct].search(pattern), (pattern, e.construct)
        assert e.position is not None and 0 <= e.position < len(pattern)
        return
    for s in _strings(compiled, text):
        assert dfa.fullmatch(s) == (compiled.fullmatch(s) is not None), (pattern, s)


def test_only_inexpressible_cases_are_rejected():
    """Of the table's valid patterns, only those using an unsupported construct are rejected."""
    rejected = []
    for pattern, *_ in CASES:
        try:
            re.compile(pattern)
        except re.error:
            continue
        try:
            compile_regex(pattern)
        except UnsupportedRegexError:
            rejected.append(pattern)
    assert rejected
    assert all(any(rx.search(p) for rx in UNSUPPORTED_SYNTAX.values()) for p in rejected)
    # A table of ordinary patterns: almost all of them are regular.
    assert len(rejected) < 0.15 * len(CASES)
