"""Parsing: Python's syntax errors, unsupported constructs with positions, flags applied."""

import re

import pytest

from regexlm.automata import compile_regex
from regexlm.automata.parse import Chars, Concat, Look, Repeat, parse
from regexlm.errors import RegexError, RegexSyntaxError, UnsupportedRegexError

SYNTAX_ERRORS = ["(a", "a)", "a**", "[z-a]", "(?P<1>a)", "\\", "a{2,1}", "(?Q)", "[a", "*a",
                 "(?P<n>a)(?P<n>b)", "(?i", r"\p{L}", "(?<=a+)b", "(?P=missing)"]  # fmt: skip


@pytest.mark.parametrize("pattern", SYNTAX_ERRORS)
def test_syntax_errors_are_pythons(pattern):
    with pytest.raises(re.error) as want:
        re.compile(pattern)
    with pytest.raises(RegexSyntaxError) as got:
        compile_regex(pattern)
    assert got.value.msg == want.value.msg
    assert got.value.position == want.value.pos
    assert got.value.pattern == pattern
    assert isinstance(got.value, RegexError) and isinstance(got.value, ValueError)


def test_flag_conflicts_are_syntax_errors():
    with pytest.raises(ValueError, match="incompatible"):
        re.compile("(?a)(?u)x")  # Python raises a bare ValueError here
    with pytest.raises(RegexSyntaxError, match="incompatible"):
        compile_regex("(?a)(?u)x")
    with pytest.raises(RegexSyntaxError, match="'L' flag"):
        compile_regex("(?L)a")


UNSUPPORTED = [
    ("ab(?=c)", "lookahead", 2),
    ("ab(?!c)d", "lookahead", 2),
    ("(?<=x)y", "lookbehind", 0),
    ("x(?<!y)z", "lookbehind", 1),
    ("(a)\\1", "backreference", 3),
    ("(?P<n>a)(?P=n)", "backreference", 8),
    ("(a)?(?(1)b|c)", "conditional", 4),
    ("x(?>ab)", "atomic group", 1),
    ("a*+", "possessive quantifier", 1),
    ("ba++", "possessive quantifier", 2),
    ("a?+", "possessive quantifier", 1),
    ("a{2}+", "possessive quantifier", 3),
    ("[(?=]x(?!y)", "lookahead", 6),  # the class is not a lookahead
    ("\\(?=x(?=y)", "lookahead", 5),  # an escaped paren neither
    ("[+]++", "possessive quantifier", 3),
    ("(?x) a (?= b )", "lookahead", 7),
]


@pytest.mark.parametrize("pattern,construct,position", UNSUPPORTED)
def test_unsupported_constructs_named_with_position(pattern, construct, position):
    re.compile(pattern)  # valid Python
    with pytest.raises(UnsupportedRegexError) as info:
        compile_regex(pattern)
    assert info.value.construct == construct
    assert info.value.position == position
    assert construct in str(info.value) and f"position {position}" in str(info.value)


def test_escaped_lookalikes_are_supported():
    for pattern, text in [(r"\(?=x", "(=x"), (r"a\++", "a++"), (r"[(?!]+", "(?!"), (r"\\1", "\\1")]:
        assert compile_regex(pattern).fullmatch(text) == bool(re.fullmatch(pattern, text))


def test_pattern_must_be_str():
    with pytest.raises(TypeError):
        compile_regex(b"abc")
    with pytest.raises(ValueError):
        compile_regex([])


def test_error_in_a_list_names_the_pattern():
    with pytest.raises(UnsupportedRegexError) as info:
        compile_regex(["ok", "(a)\\1"])
    assert info.value.pattern == "(a)\\1"


def test_flags_are_applied_and_groups_vanish():
    assert parse("(?i)a") == Chars(((0x41, 0x41), (0x61, 0x61)))
    assert parse("a*?") == parse("a*") == Repeat(Chars(((0x61, 0x61),)), 0, None)
    assert parse("(?P<x>a)(?:b)") == parse("ab") == parse("(a)(b)")
    assert parse("(?s:.)") == Chars(((0, 0x10FFFF),))
    assert parse(".") == Chars(((0, 9), (11, 0x10FFFF)))
    assert parse("(?m)^") == Look("start_line") and parse("^") == Look("start_text")
    assert parse("(?a)\\b") == Look("word_ascii") and parse("\\b") == Look("word_unicode")
    assert parse("(?x) a b # comment") == Concat((Chars(((0x61, 0x61),)), Chars(((0x62, 0x62),))))
    # A scoped (?a) replaces the inherited Unicode mode, (?u) restores it.
    assert parse(r"(?a:\d)") == Chars(((0x30, 0x39),))
    assert parse(r"(?a)(?u:\d)") != Chars(((0x30, 0x39),))


def test_repetition_count_beyond_what_re_accepts_is_a_syntax_error():
    with pytest.raises(OverflowError):
        re.compile("a{4294967295}")
    with pytest.raises(RegexSyntaxError, match="repetition number is too large"):
        compile_regex("a{4294967295}")


@pytest.mark.parametrize(
    "pattern, texts",
    [
        (r"(.|\n){0,3}", ["", "a\n", "\n\n\n", "abcd"]),
        (r"(a|[bc]|de|\d)x", ["ax", "cx", "dex", "7x", "٣x", "dx", "x"]),
        (r"(?i:k|[0-9])|zz", ["K", "k", "\u212a", "5", "zz", "Z"]),
    ],
)
def test_one_character_branches_become_one_set(pattern, texts):
    # the same language as re's, with the single-character branches merged into one set
    tree = parse(pattern)
    flat = tree.item if isinstance(tree, Repeat) else tree
    found = [flat] if isinstance(flat, Chars) else []
    stack = [flat]
    while stack:
        node = stack.pop()
        for item in getattr(node, "items", ()):
            found.append(item)
            stack.append(item)
    branches = [n for n in found if type(n).__name__ == "Alt"]
    assert all(sum(isinstance(b, Chars) for b in alt.items) <= 1 for alt in branches)
    dfa = compile_regex(pattern)
    for text in texts:
        assert dfa.fullmatch(text) == (re.fullmatch(pattern, text) is not None), text


def test_merged_branches_make_a_smaller_automaton():
    from regexlm.automata.compiler import compile_lazy

    merged = compile_lazy(r"(.|\n){0,100}")
    written = compile_lazy(r"[\s\S]{0,100}")
    assert merged._sc.n == written._sc.n


def test_equal_classes_parsed_again_are_one_object():
    # \w holds hundreds of ranges: every automaton that reads it holds the same tuple
    first, again = parse(r"\w{1,40}@"), parse(r"(\w+\s?){1,10}")
    word = first.items[0].item.chars
    assert again.item.items[0].item.chars is word
    assert parse(r"[^\W\d]").chars is not word  # another set: its own object
