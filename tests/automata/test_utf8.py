"""UTF-8 automata accept exactly the encodings of their set: valid UTF-8, no surrogates."""

import itertools
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regexlm.automata import charset as cs
from regexlm.automata import compile_regex
from regexlm.automata.utf8 import utf8_automaton

SETS = [
    cs.ALL,
    ((0x7F, 0x80),),
    ((0x7FF, 0x800),),
    ((0xFFFF, 0x10000),),
    ((0xD7FF, 0xE000),),  # spans the surrogates
    ((0x10FFFF, 0x10FFFF),),
    ((0x41, 0x41), (0xE9, 0xE9), (0x65E5, 0x65E5), (0x1F600, 0x1F600)),
    cs.complement(((0x61, 0x61),)),
    ((0x100, 0x2FFF), (0x3001, 0x10000), (0x10002, 0x10FFFE)),
]


def _decode_one(data: bytes) -> int | None:
    """The code point if ``data`` is exactly one valid UTF-8 character, else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return ord(text) if len(text) == 1 else None


def _all_short_inputs(rng: random.Random):
    yield from (bytes([b]) for b in range(256))
    yield from (bytes(p) for p in itertools.product(range(0xC0, 0x100), range(0x70, 0xD0, 3)))
    for _ in range(20000):
        n = rng.randint(2, 4)
        lead = rng.choice([rng.randrange(0xC0, 0x100), rng.randrange(0xE0, 0xF8)])
        yield bytes([lead] + [rng.randrange(0x70, 0xD0) for _ in range(n - 1)])


@pytest.mark.parametrize("chars", SETS, ids=lambda s: str(s[:2]))
def test_accepts_exactly_the_encodings(chars):
    auto = utf8_automaton(chars)
    rng = random.Random(str(chars))
    for data in _all_short_inputs(rng):
        c = _decode_one(data)
        want = c is not None and cs.contains(chars, c)
        assert auto.accepts(data) == want, (chars[:3], data)
    # Every edge code point of every range.
    for lo, hi in chars:
        for c in {lo - 1, lo, hi, hi + 1}:
            if 0 <= c <= 0x10FFFF and not 0xD800 <= c <= 0xDFFF:
                assert auto.accepts(chr(c).encode()) == cs.contains(chars, c), hex(c)


BROAD = [r"(?s).", r".", r"[^a]", r"\W", r"\D", r"\S", r"[\s\S]", r"[^\n]"]
INVALID = [
    b"\xed\xa0\x80",  # U+D800, a surrogate
    b"\xed\xbf\xbf",  # U+DFFF
    b"\xc0\x80",  # overlong NUL
    b"\xc1\xbf",
    b"\xe0\x80\x80",  # overlong
    b"\xe0\x9f\xbf",
    b"\xf0\x80\x80\x80",
    b"\xf0\x8f\xbf\xbf",
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf5\x80\x80\x80",
    b"\xff",
    b"\x80",
    b"\xc3",  # truncated
]


@pytest.mark.parametrize("pattern", BROAD)
def test_invalid_utf8_and_surrogates_never_match(pattern):
    dfa = compile_regex(pattern)
    for data in INVALID:
        assert not dfa.fullmatch(data), (pattern, data)
    # A str holding a lone surrogate is not UTF-8 either: never a match, never viable.
    assert not dfa.fullmatch("\ud800")
    assert not dfa.is_viable("\udfff")
    assert re.fullmatch(pattern, "\ud800")  # whereas re itself would match it


def test_a_class_of_surrogates_only_is_empty():
    # re would match a lone surrogate in a str, but no UTF-8 byte string encodes one.
    assert re.fullmatch("[\ud800-\udfff]", "\udc00")
    dfa = compile_regex("[\ud800-\udfff]|x")
    assert dfa.fullmatch("x") and not dfa.fullmatch("\udc00") and dfa.num_states == 3
    assert compile_regex("a[\ud800-\udfff]+").is_empty


def test_negated_class_accepts_multibyte():
    dfa = compile_regex("[^a]")
    for ch in ["é", "ß", "日", "😀", "\u212a", "\U0010ffff", "\x00", "\n"]:
        assert dfa.fullmatch(ch), ch
    assert not dfa.fullmatch("a")
    assert dfa.is_viable(b"\xf0\x9f")  # first half of an emoji
    assert not dfa.is_viable(b"\xf0\x8f")  # overlong prefix: nothing completes it


def test_dot_automaton_is_small():
    assert utf8_automaton(cs.complement(((0x0A, 0x0A),))).num_states == 8


def _run_labelled(auto, data: bytes):
    """Label of the set whose member ``data`` encodes, or None."""
    u = 0
    for i, b in enumerate(data):
        for lo, hi, t in auto.trans[u]:
            if lo <= b <= hi:
                if t < 0:
                    return -1 - t if i == len(data) - 1 else None
                u = t
                break
        else:
            return None
    return None


def test_partition_automaton_labels_each_set():
    from regexlm.automata import unicode as uni
    from regexlm.automata.utf8 import utf8_partition_automaton

    word = uni.unicode_word()
    parts = (cs.subtract(cs.complement(((10, 10),)), word), word, ((10, 10),))
    auto = utf8_partition_automaton(parts)
    single = [utf8_automaton(p) for p in parts]
    # Shared states inside characters: fewer than the separate automata together.
    assert auto.num_states < sum(a.num_states for a in single)
    rng = random.Random(7)
    points = [c for c in rng.sample(range(0x110000), 20000) if not 0xD800 <= c <= 0xDFFF]
    for lo, hi in word:
        points += [lo, hi, lo - 1, hi + 1]
    for c in points:
        if not 0 <= c <= 0x10FFFF or 0xD800 <= c <= 0xDFFF:
            continue
        want = next(i for i, p in enumerate(parts) if cs.contains(p, c))
        assert _run_labelled(auto, chr(c).encode()) == want, hex(c)
    for data in INVALID:
        assert _run_labelled(auto, data) is None


@settings(max_examples=200, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 0x80), max_size=12),
    labels=st.lists(st.integers(0, 3), min_size=13, max_size=13),
    wide=st.integers(0x80, 0x10FFFF),
)
def test_partition_automata_label_every_character_of_disjoint_sets(cuts, labels, wide):
    """Disjoint sets cut from ASCII (one character of ``wide`` added to the last or not): each
    character reads to its set's label, and nothing else is read (the ASCII-only automata are
    made without the multi-byte construction)."""
    from regexlm.automata.utf8 import utf8_partition_automaton

    bounds = sorted({0, 0x80, *cuts})
    sets: list[list[tuple[int, int]]] = [[] for _ in range(4)]
    for k, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        sets[labels[k]].append((lo, hi - 1))
    with_wide = labels[-1] % 2 == 1 and not 0xD800 <= wide <= 0xDFFF
    if with_wide:
        sets[3].append((wide, wide))
    parts = tuple(cs.canonical(s) for s in sets if s)
    auto = utf8_partition_automaton(parts)
    for c in [*range(0x80), 0xE9, 0x65E5, 0x1F600, wide]:
        if 0xD800 <= c <= 0xDFFF:
            continue
        want = next((i for i, p in enumerate(parts) if cs.contains(p, c)), None)
        assert _run_labelled(auto, chr(c).encode()) == want, hex(c)
