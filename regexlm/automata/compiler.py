"""``compile_regex``: the pipeline from pattern strings to a minimized byte DFA.

    pattern(s) --parse--> syntax tree --nfa--> character NFA --remove assertions, trim-->
    NFA --subset construction (UTF-8, byte classes)--> DFA --minimize--> DFA

Each stage lives in its own module; this one wires them and applies the limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np

from regexlm.automata import minimize as mz
from regexlm.automata import native_lazy
from regexlm.automata.dfa import DFA, determinize
from regexlm.automata.lazy import DEFAULT_CACHE_BYTES, LazyDFA
from regexlm.automata.limits import (
    DEFAULT_MAX_NFA_STATES,
    DEFAULT_MAX_STATES,
    DEFAULT_TIMEOUT,
    Deadline,
    Limits,
)
from regexlm.automata.nfa import build_nfa, remove_looks, trim
from regexlm.automata.parse import parse


def _patterns(pattern) -> tuple[str, ...]:
    patterns = (pattern,) if isinstance(pattern, str) else tuple(pattern)
    if not patterns:
        raise ValueError("at least one pattern is required")
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError(f"patterns must be str, not {type(p).__name__}")
    return patterns


def _trimmed_nfa(patterns: tuple[str, ...], limits: Limits, deadline: Deadline):
    trees = [parse(p) for p in patterns]
    nfa = build_nfa(trees, limits)
    deadline.check("NFA construction")
    return trim(remove_looks(nfa, limits, deadline))


def compile_lazy(
    pattern: str | Sequence[str],
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_nfa_states: int = DEFAULT_MAX_NFA_STATES,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    native: bool | None = None,
) -> LazyDFA:
    """Compile a Python regex (or a list of them) into a :class:`LazyDFA` over UTF-8 bytes.

    The same language as :func:`compile_regex`, but DFA states are built when first reached,
    within ``cache_bytes`` of cache, so no regular pattern is refused for its DFA size. Only
    the NFA's size (``max_nfa_states``) and the CPU time of parsing and NFA construction
    (``timeout``) are limited, raising :class:`~regexlm.PatternTooComplexError`; later, the
    same ``timeout`` bounds each call that builds states under :meth:`LazyDFA.time_limit`.

    ``native``: None keeps the state cache in C where the C helpers can be built
    (:class:`~regexlm.automata.native_lazy.NativeLazyDFA`), else in Python; True requires C,
    False forces Python (the reference).
    """
    patterns = _patterns(pattern)
    limits = Limits(max_nfa_states=max_nfa_states, timeout=timeout)
    nfa = _trimmed_nfa(patterns, limits, Deadline(timeout))
    if native is not False and (native or native_lazy.available()):
        return native_lazy.NativeLazyDFA(
            nfa,
            patterns,
            cache_bytes=cache_bytes,
            step_timeout=timeout,
            rebuild_nfa=partial(_trimmed_nfa, patterns, limits, Deadline(None)),
        )
    return LazyDFA(nfa, patterns, cache_bytes=cache_bytes, step_timeout=timeout)


def compile_regex(
    pattern: str | Sequence[str],
    *,
    max_states: int = DEFAULT_MAX_STATES,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_nfa_states: int = DEFAULT_MAX_NFA_STATES,
    minimize: bool = True,
) -> DFA:
    """Compile a Python regex (or a list of them) into a DFA over UTF-8 bytes.

    The DFA accepts exactly the UTF-8 encodings of the strings ``s`` for which
    ``re.fullmatch(pattern, s)`` succeeds. With several patterns it accepts a string matching any
    of them and ``accept[state]`` is the lowest index that matches.

    Only valid UTF-8 is accepted, so a string holding a lone surrogate (which ``re`` can match
    but which has no UTF-8 encoding) never matches.

    ``max_states`` caps the DFA states built, ``max_nfa_states`` the (estimated) NFA size and
    ``timeout`` the CPU seconds spent (None: no time limit); past any of them
    :class:`~regexlm.PatternTooComplexError` is raised. ``minimize=False`` skips minimization
    (for tests and debugging).

    Raises :class:`~regexlm.RegexSyntaxError` for invalid syntax and
    :class:`~regexlm.UnsupportedRegexError` for constructs no finite automaton can express.
    """
    patterns = _patterns(pattern)
    limits = Limits(max_states=max_states, max_nfa_states=max_nfa_states, timeout=timeout)
    deadline = Deadline(timeout)
    nfa = _trimmed_nfa(patterns, limits, deadline)
    table, accept, class_of, start = determinize(nfa, limits, deadline)
    # Merge construction classes that no state tells apart, before the costlier stages.
    table, class_of = mz.compress_classes(table, class_of)
    if minimize:
        blocks = mz.minimize(table, accept, deadline)
    else:
        blocks = np.arange(table.shape[0])
    table, accept, start = mz.renumber(table, accept, start, blocks)
    table, byte_classes = mz.compress_classes(table, class_of)
    return DFA(table, accept, byte_classes, start, patterns)
