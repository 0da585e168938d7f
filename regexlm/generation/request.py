"""What one generation asks for: the prompt, the pattern(s) and the sampling parameters.

A :class:`GenerationRequest` is plain data. :meth:`GenerationRequest.validate` checks every field
against the ranges the sampling pipeline accepts and raises a :class:`ValueError` whose message
starts with the field's name, so a caller (the HTTP server above all) can hand it to a user as is.
Validation does not compile the pattern: that is the index layer's job, and its errors (the
:class:`~regexlm.errors.RegexError` family) are raised by :meth:`Generator.compile`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

# Seeds are fed to torch generators, which take 64-bit values; we keep to the non-negative half.
MAX_SEED = 2**63 - 1

# The parameters a request may set, besides the prompt and the pattern.
PARAMETER_NAMES = (
    "max_new_tokens",
    "stop_after_match",
    "top_k",
    "top_p",
    "temperature",
    "repetition_penalty",
    "seed",
)


@dataclass
class GenerationRequest:
    """One prompt to complete under a pattern (or a list of patterns: any of them may match)."""

    prompt: str
    pattern: str | list[str]
    max_new_tokens: int = 5
    stop_after_match: bool = True
    top_k: int = 50
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    @property
    def patterns(self) -> tuple[str, ...]:
        """The pattern(s) as a tuple, whatever form the request gave."""
        if isinstance(self.pattern, str):
            return (self.pattern,)
        return tuple(self.pattern)

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0

    def validate(self) -> GenerationRequest:
        """Check every field; raise ``ValueError`` naming the first bad one. Returns ``self``."""
        if not isinstance(self.prompt, str):
            raise ValueError(f"prompt must be a string, got {type(self.prompt).__name__}")
        _check_pattern(self.pattern)
        _check_int("max_new_tokens", self.max_new_tokens, minimum=1)
        if not isinstance(self.stop_after_match, bool):
            raise ValueError(
                f"stop_after_match must be true or false, got {self.stop_after_match!r}"
            )
        _check_int("top_k", self.top_k, minimum=0)
        top_p = _check_float("top_p", self.top_p)
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        temperature = _check_float("temperature", self.temperature)
        if temperature < 0.0:
            raise ValueError(
                f"temperature must be 0 (greedy) or a positive number, got {self.temperature!r}"
            )
        penalty = _check_float("repetition_penalty", self.repetition_penalty)
        if penalty <= 0.0:
            raise ValueError(
                f"repetition_penalty must be a positive number (1 disables it), got "
                f"{self.repetition_penalty!r}"
            )
        if self.seed is not None:
            _check_int("seed", self.seed, minimum=0, maximum=MAX_SEED)
        return self

    def parameters(self) -> dict:
        """The sampling parameters as a dict (everything but prompt and pattern)."""
        return {name: getattr(self, name) for name in PARAMETER_NAMES}

    def to_dict(self) -> dict:
        return asdict(self)


def _check_pattern(pattern) -> None:
    if isinstance(pattern, str):
        return
    if isinstance(pattern, (list, tuple)):
        if not pattern:
            raise ValueError("pattern must be a string or a non-empty list of strings, got []")
        for i, item in enumerate(pattern):
            if not isinstance(item, str):
                raise ValueError(f"pattern[{i}] must be a string, got {type(item).__name__}")
        return
    raise ValueError(f"pattern must be a string or a list of strings, got {type(pattern).__name__}")


def _check_int(name: str, value, *, minimum: int, maximum: int | None = None) -> int:
    # bool is an int in Python, but `max_new_tokens=True` is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def _check_float(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value
