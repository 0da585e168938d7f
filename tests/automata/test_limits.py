"""Regex bombs fail fast, with a typed error naming the limit, and without a memory spike; a lazy
automaton bounds the states one call makes, by CPU time and by bytes."""

import random
import time
import tracemalloc

import pytest

from regexlm.automata import compile_lazy, compile_regex
from regexlm.errors import PatternTooComplexError, RegexError

BOMBS = [
    (r"(a|b)*a(a|b){20}", "max_states"),
    (r"a{100000}", "max_nfa_states"),
    (r"(x{1000}){1000}", "max_nfa_states"),
    (r"[\s\S]{5000}", "max_states"),
    ("(" * 1000 + "a" + ")" * 1000, "nesting"),
    ("(?:a|" * 300 + ")" * 300, "nesting"),
    ("((((((((((a{2}){2}){2}){2}){2}){2}){2}){2}){2}){2}){2}" * 8, "max_nfa_states"),
    (r"\w{1000}", "max_states"),
    (r"(?:[\s\S]{10}){500}", "max_states"),
]


@pytest.mark.parametrize(
    "pattern,limit", BOMBS, ids=lambda x: x[:30] if isinstance(x, str) else None
)
def test_bomb_fails_fast(pattern, limit):
    start = time.process_time()  # CPU time: robust to other processes on a shared machine
    with pytest.raises(PatternTooComplexError) as info:
        compile_regex(pattern, timeout=None)  # the structural limits alone stop it
    assert time.process_time() - start < 2.0
    assert info.value.limit == limit
    assert isinstance(info.value, RegexError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "pattern,limit", BOMBS[:4] + BOMBS[6:], ids=lambda x: x[:30] if isinstance(x, str) else None
)
def test_bomb_has_no_memory_spike(pattern, limit):
    tracemalloc.start()
    try:
        with pytest.raises(PatternTooComplexError):
            compile_regex(pattern)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, peak


def test_messages_say_which_limit_and_how_much():
    with pytest.raises(PatternTooComplexError, match=r"max_states=50\b.*51"):
        compile_regex(r"(a|b)*a(a|b){8}", max_states=50)
    with pytest.raises(
        PatternTooComplexError, match=r"about \d+ NFA states, over the limit of 1000 \(\d+\.\dx\)"
    ):
        compile_regex(r"a{5000}", max_nfa_states=1000)
    with pytest.raises(PatternTooComplexError, match=r"^2 patterns together expand .* send fewer"):
        compile_regex([r"a{200}", r"b{200}"], max_nfa_states=1000)  # each alone would fit
    compile_regex(r"a{200}", max_nfa_states=1000)
    with pytest.raises(PatternTooComplexError, match=r"time limit of 0\.001 s") as info:
        compile_regex(r"(a|b)*a(a|b){16}", timeout=0.001, max_states=10**6)
    assert info.value.limit == "timeout"


def test_limits_are_configurable():
    # Fails under a small state cap, compiles under a larger one.
    with pytest.raises(PatternTooComplexError):
        compile_regex(r"(a|b)*a(a|b){10}", max_states=1000)
    dfa = compile_regex(r"(a|b)*a(a|b){10}", max_states=5000)
    assert dfa.num_states == 2**11 + 1  # 2^11 windows of the last 11 letters, plus dead
    with pytest.raises(PatternTooComplexError):
        compile_regex(r"a{20000}")
    dfa = compile_regex(r"a{20000}", max_nfa_states=100_000, max_states=30_000, timeout=None)
    assert dfa.fullmatch("a" * 20000) and not dfa.fullmatch("a" * 19999)


def test_realistic_large_repeat_compiles():
    dfa = compile_regex(r"[a-z]{1,200}")
    assert dfa.fullmatch("a" * 200) and not dfa.fullmatch("a" * 201)
    assert compile_regex(r"(a|b)*a(a|b){12}").num_states == 2**13 + 1


# A lazy automaton builds its states after compilation; one call's worth of them is bounded.
# Each state of this one holds hundreds of positions. Its language, worked out by hand (``re``
# backtracks exponentially on it): any text of at most 40 x 40 characters without a newline.
NESTED_BROAD = r"(.{0,20}\w{0,20}){0,40}"


def _in_nested_broad(text: str) -> bool:
    return "\n" not in text and len(text) <= 1600


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    alphabet = "ab_ .,é中\n"
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.choice([rng.randint(0, 30), 1600, 1601])))
        for _ in range(n)
    ]


def test_a_call_past_its_bytes_is_refused_and_the_automaton_stays_right():
    lazy = compile_lazy(NESTED_BROAD)
    lazy.step_bytes = 1 << 20
    lazy.step_timeout = None  # the bytes, not the CPU time, whatever the machine's speed
    with pytest.raises(PatternTooComplexError, match="more than 1 MB of DFA states") as info:
        with lazy.time_limit("walking texts"):
            for text in _texts(2000):
                lazy.fullmatch(text)
    assert info.value.limit == "memory"
    for text in _texts(200, seed=1):  # outside a limited call, and after the refusal
        assert lazy.fullmatch(text) == _in_nested_broad(text), text


def test_a_call_past_its_time_is_refused_naming_the_outermost_activity():
    lazy = compile_lazy(NESTED_BROAD)
    lazy.step_timeout = 0.0
    with pytest.raises(PatternTooComplexError, match=r"^walking texts took longer than the time"):
        with lazy.time_limit("walking texts"), lazy.time_limit("an inner step"):
            for text in _texts(50):
                lazy.fullmatch(text)
    lazy.fullmatch("ab")  # no limit outside a block, whatever step_timeout says
    with lazy.time_limit("no timeout"):
        lazy.step_timeout = None
        lazy.step_bytes = None
    with lazy.time_limit("unbounded"):
        assert lazy.fullmatch("abc é") and not lazy.fullmatch("abc\né")
