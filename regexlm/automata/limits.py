"""Size and time limits, checked before and during compilation.

A regular expression can ask for far more automaton than it looks: ``a{100000}`` is a chain of
100,000 states, ``(x{1000}){1000}`` a million, and ``(a|b)*a(a|b){20}`` has a DFA of two million
states while its NFA has forty. Compilation therefore checks three limits, each raising
:class:`~regexlm.errors.PatternTooComplexError` that names the limit and the amount:

* ``max_nfa_states``: the NFA size is *estimated from the syntax tree before anything is
  expanded* (a repeat costs its body times its count), so a huge repeat fails at once and without
  allocating anything;
* ``max_states``: the subset construction stops as soon as it creates one DFA state too many
  (it counts the states before minimization, the dead state aside);
* ``timeout``: every stage polls a deadline and stops once it has passed. The deadline counts
  the compiling thread's CPU time, not wall-clock time: the limit is there to stop patterns that
  need too much work, and a busy machine (other threads, other processes) must not make an
  ordinary pattern fail.

A lazy automaton (:mod:`regexlm.automata.lazy`) builds its states after compilation, as token
rows need them, so the same ``timeout`` bounds each of those builds too (the states one call
for rows needs), and the bytes of the states one such call creates are bounded as well: the
cache can only be cleared between calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from regexlm.errors import PatternTooComplexError

DEFAULT_MAX_STATES = 10_000
DEFAULT_MAX_NFA_STATES = 50_000
DEFAULT_TIMEOUT = 1.0


@dataclass(frozen=True)
class Limits:
    max_states: int = DEFAULT_MAX_STATES
    max_nfa_states: int = DEFAULT_MAX_NFA_STATES
    timeout: float | None = DEFAULT_TIMEOUT


class Deadline:
    """A budget of CPU seconds (of the calling thread) after which ``activity`` gives up."""

    __slots__ = ("start", "timeout", "at", "activity")

    def __init__(self, timeout: float | None, activity: str = "compiling the pattern"):
        # (no clock read without a budget: a compile makes several)
        self.start = 0.0 if timeout is None else time.thread_time()
        self.timeout = timeout
        self.at = None if timeout is None else self.start + timeout
        self.activity = activity

    def check(self, stage: str) -> None:
        if self.at is not None and time.thread_time() > self.at:
            elapsed = time.thread_time() - self.start
            raise PatternTooComplexError(
                f"{self.activity} took longer than the time limit of {self.timeout:g} s "
                f"of CPU time ({elapsed:.2f} s spent, stopped during {stage}); simplify the "
                "pattern or raise timeout",
                limit="timeout",
            )


def too_many_walk_bytes(limit: int) -> PatternTooComplexError:
    return PatternTooComplexError(
        f"one step of the pattern's automaton needs more than {limit >> 20} MB of DFA states; "
        "simplify the pattern (nested counted repeats of broad classes such as . or \\w make "
        "states hold many positions at once)",
        limit="memory",
    )


def too_many_dfa_states(limit: int) -> PatternTooComplexError:
    return PatternTooComplexError(
        f"the pattern needs more than max_states={limit} DFA states (stopped at {limit + 1}); "
        "simplify the pattern (bounded repeats of alternations multiply states) or raise max_states",
        limit="max_states",
    )


def too_many_nfa_states(estimate: int, limit: int, patterns: int = 1) -> PatternTooComplexError:
    # patterns: how many of a list were counted when the limit was passed
    what = "the pattern expands" if patterns == 1 else f"{patterns} patterns together expand"
    return PatternTooComplexError(
        f"{what} to about {estimate} NFA states, over the limit of {limit} "
        f"({estimate / limit:.1f}x); large repeat counts multiply the size of what they repeat"
        + ("" if patterns == 1 else "; a list of patterns shares one limit, so send fewer"),
        limit="max_nfa_states",
    )
