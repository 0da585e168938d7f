"""A vLLM request's regexlm arguments: what ``SamplingParams.extra_args`` may carry, checked.

vLLM hands every request's ``extra_args`` dict (the OpenAI server's ``vllm_xargs``) to each
logits processor. regexlm reads two keys and ignores the rest (other processors own them):

* ``regex``: a pattern or a non-empty list of patterns (Python ``re`` syntax); its presence is
  what makes a request constrained;
* ``stop_after_match``: a boolean, default true: end the request at the first token after which
  the text matches (1/0 and "true"/"false" are taken too: vLLM's OpenAI server types
  ``vllm_xargs`` values as strings and numbers).

:func:`request_arguments` turns a ``SamplingParams`` into :class:`RegexArguments` (or None for
a request that is not constrained) and raises ``ValueError`` with a message a user can act on:
a wrong type, a pattern Python's ``re`` refuses or one no finite automaton can express (both
named with their position), and the sampling options that would let vLLM end the text where the
pattern does not (stop strings, extra stop token ids, ``ignore_eos``, ``min_tokens``) or that
would stack a second constraint on it (vLLM's own ``structured_outputs``). The checks that need
the tokenizer (a pattern no text of the model's tokens can match) happen when the pattern is
compiled for the model.

Pattern checks are cached (a bounded LRU keyed by the patterns), so a frontend that sees the
same pattern again answers at once. Nothing here imports vLLM or torch.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from regexlm.errors import RegexError

REGEX_KEY = "regex"
STOP_AFTER_MATCH_KEY = "stop_after_match"
CHECKED_PATTERNS = 1024


@dataclass(frozen=True)
class RegexArguments:
    """One constrained request's arguments: its patterns and whether it ends at the first match."""

    patterns: tuple[str, ...]
    stop_after_match: bool = True


def _patterns(value) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and value and all(isinstance(p, str) for p in value):
        return tuple(value)
    raise ValueError(
        f"extra_args['{REGEX_KEY}'] must be a pattern (a string) or a non-empty list of "
        f"patterns, got {type(value).__name__} {_short(value)}"
    )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_arguments(extra_args) -> RegexArguments | None:
    """The regexlm arguments in an ``extra_args`` dict, types checked; None when unconstrained."""
    if not extra_args or REGEX_KEY not in extra_args:
        return None
    patterns = _patterns(extra_args[REGEX_KEY])
    stop = _flag(extra_args.get(STOP_AFTER_MATCH_KEY, True))
    return RegexArguments(patterns, stop)


# vLLM's OpenAI server types vllm_xargs values as strings, numbers or lists: a JSON `false` may
# arrive as 0, and a client may send "false".
_FLAGS = {1: True, 0: False, "true": True, "false": False}  # True == 1 and False == 0 as keys


def _flag(value) -> bool:
    key = value.lower() if isinstance(value, str) else value
    if isinstance(key, bool | int | str) and key in _FLAGS:
        return _FLAGS[key]
    raise ValueError(
        f"extra_args['{STOP_AFTER_MATCH_KEY}'] must be true or false, got {_short(value)}"
    )


_checked: OrderedDict[tuple[str, ...], str | None] = OrderedDict()
_checked_lock = threading.Lock()


def check_patterns(patterns: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the first pattern Python's ``re`` or the automaton refuses."""
    with _checked_lock:
        if patterns in _checked:
            _checked.move_to_end(patterns)
            problem = _checked[patterns]
        else:
            problem = _first_problem(patterns)
            _checked[patterns] = problem
            while len(_checked) > CHECKED_PATTERNS:
                _checked.popitem(last=False)
    if problem is not None:
        raise ValueError(problem)


def _first_problem(patterns: tuple[str, ...]) -> str | None:
    from regexlm.automata.parse import parse

    for i, pattern in enumerate(patterns):
        try:
            parse(pattern)
        except RegexError as exc:
            where = f"extra_args['{REGEX_KEY}']" + (f"[{i}]" if len(patterns) > 1 else "")
            return f"{where} {pattern!r} cannot be used: {exc}"
    return None


# The sampling options that let vLLM end a request where the pattern does not (the pattern
# decides where the completion ends), or that stack another constraint on it.
def _conflicts(params) -> list[str]:
    problems = []
    if getattr(params, "stop", None):
        problems.append("stop strings (`stop`)")
    if getattr(params, "stop_token_ids", None):
        problems.append("`stop_token_ids`")
    if getattr(params, "ignore_eos", False):
        problems.append("`ignore_eos`")
    if getattr(params, "min_tokens", 0):
        problems.append("`min_tokens`")
    if getattr(params, "structured_outputs", None) is not None:
        problems.append("`structured_outputs` (vLLM's own guided decoding)")
    return problems


def request_arguments(params) -> RegexArguments | None:
    """Check a ``SamplingParams``-like object; its :class:`RegexArguments`, or None if it has
    no ``regex``. Raises ``ValueError`` (vLLM answers it with a 400) naming what is wrong."""
    arguments = parse_arguments(getattr(params, "extra_args", None))
    if arguments is None:
        return None
    check_patterns(arguments.patterns)
    conflicts = _conflicts(params)
    if conflicts:
        raise ValueError(
            f"extra_args['{REGEX_KEY}'] cannot be combined with {', '.join(conflicts)}: the "
            "pattern decides where the completion ends (end-of-sequence is allowed exactly "
            "where the text matches). Leave those options out."
        )
    return arguments
