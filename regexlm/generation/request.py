"""What one generation asks for: the prompt, the pattern(s) and the sampling parameters.

A :class:`GenerationRequest` is plain data. :meth:`GenerationRequest.validate` checks every field
against the ranges the sampling pipeline accepts and raises a :class:`FieldError` (a
:class:`ValueError`) whose message starts with the field's name, so a caller (the HTTP server
above all) can hand it to a user as is. Validation does not compile the pattern: that is the index
layer's job, and its errors (the :class:`~regexlm.errors.RegexError` family) are raised by
:meth:`Generator.compile`.

The ranges
----------

The sampling step runs in float32 (and int32 for counts), so every number is checked as the step
will see it: a value that is finite in Python but overflows float32 (``1e39``), or a positive one
that underflows to 0 (``1e-300``, which would silently turn sampling into greedy decoding), is
refused, not clamped. The bounds keep every product the step forms (logit / penalty / temperature)
finite for any logit a model produces (up to about 1e30 in magnitude).

======================  =======  ==========================================================
field                   type     accepted
======================  =======  ==========================================================
``max_new_tokens``      integer  1 to 2**31 - 1 (a server lowers the top with its own limit)
``top_k``               integer  0 (off) to 2**31 - 1; a k at least the number of allowed
                                 tokens keeps them all
``top_p``               number   0 to 1; 1 is off, 0 keeps only the most likely token(s)
``temperature``         number   0 (greedy) or 0.0001 to 10000
``repetition_penalty``  number   0.0001 to 10000; 1 is off, below 1 favours repeats
``seed``                integer  0 to 2**63 - 1, or None (a fresh draw each time)
``stop_after_match``    boolean
======================  =======  ==========================================================

``True``/``False`` are never numbers, an integer field refuses ``5.0``, a number field takes
integers. :data:`FIELDS` holds these rules; the HTTP schema (:mod:`regexlm.server.schema`) checks
the JSON fields with the same objects, so the library and the API cannot drift apart.
"""

from __future__ import annotations

import json
import math
import numbers
import struct
from dataclasses import asdict, dataclass

MAX_INT32 = 2**31 - 1
# Seeds are fed to torch generators, which take 64-bit values; we keep to the non-negative half.
MAX_SEED = 2**63 - 1
MAX_NEW_TOKENS = MAX_INT32  # budgets are int32 on the device
MAX_TOP_K = MAX_INT32  # top_k is int32 on the device
MIN_TEMPERATURE = 1e-4
MAX_TEMPERATURE = 1e4
MIN_REPETITION_PENALTY = 1e-4
MAX_REPETITION_PENALTY = 1e4

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


class FieldError(ValueError):
    """A request field with a wrong type or out of its range.

    ``str(error)`` is ``"<field> <problem>"``; ``field`` and ``problem`` are kept apart so a
    caller can quote the name its own way.
    """

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


def show(value) -> str:
    """A short rendering of a value for an error message (JSON where it has a JSON form)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {len(str(value)) if value.bit_length() < 10_000 else 'thousands of'} digits"
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def as_float32(value: float) -> float:
    """``value`` rounded to float32 as the sampling step sees it (inf past float32's range)."""
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


def _number_text(value: float) -> str:
    return f"{value:g}" if value < 1e6 else f"{value:.0e}"


@dataclass(frozen=True)
class NumberField:
    """The rule of one numeric field: its kind, its range and a hint for a user who missed it.

    Float ranges are checked on the value rounded to float32; ``zero`` admits 0 below ``low``
    (temperature: 0 is greedy).
    """

    name: str
    integer: bool
    low: float
    high: float
    zero: bool = False
    hint: str = ""

    def accepted(self, high: float | None = None) -> str:
        """The accepted range in words, e.g. ``"0 (greedy) or between 0.0001 and 10000"``."""
        top = self.high if high is None else high
        text = f"between {_number_text(self.low)} and {_number_text(top)}"
        if self.integer:
            text = f"between {self.low} and {top}"
        return f"0 {self.zero_meaning} or {text}" if self.zero else text

    @property
    def zero_meaning(self) -> str:
        return "(greedy)" if self.name == "temperature" else "(off)"

    def check(self, value, high: float | None = None):
        """``value`` as an int or float if it is of the right kind and in range; else raise
        :class:`FieldError`. ``high`` lowers the upper bound (a server's own limit)."""
        top = self.high if high is None else min(high, self.high)
        if self.integer:
            # bool is an int in Python, but `max_new_tokens=True` is a mistake, not a 1.
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise FieldError(self.name, f"must be an integer, got {show(value)}")
            number = int(value)
            if not self.low <= number <= top:
                raise self._out_of_range(value, top)
            return number
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise FieldError(self.name, f"must be a number, got {show(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf if value > 0 else -math.inf
        if not math.isfinite(number):
            raise FieldError(
                self.name,
                f"must be a finite number, got {show(value)}; it must be {self.accepted(top)}",
            )
        if self.zero and number == 0.0:
            return 0.0
        single = as_float32(number)  # what the step will compute with
        if not (as_float32(self.low) <= single <= as_float32(top)):
            raise self._out_of_range(value, top)
        return number

    def _out_of_range(self, value, top) -> FieldError:
        hint = f" ({self.hint})" if self.hint else ""
        return FieldError(self.name, f"must be {self.accepted(top)}, got {show(value)}{hint}")


FIELDS: dict[str, NumberField] = {
    field.name: field
    for field in (
        NumberField("max_new_tokens", True, 1, MAX_NEW_TOKENS),
        NumberField("top_k", True, 0, MAX_TOP_K, hint="0 disables top-k"),
        NumberField(
            "top_p",
            False,
            0.0,
            1.0,
            hint="1 disables top-p; 0 keeps only the most likely token",
        ),
        NumberField(
            "temperature",
            False,
            MIN_TEMPERATURE,
            MAX_TEMPERATURE,
            zero=True,
            hint="use 0 for greedy decoding",
        ),
        NumberField(
            "repetition_penalty",
            False,
            MIN_REPETITION_PENALTY,
            MAX_REPETITION_PENALTY,
            hint="1 disables the penalty",
        ),
        NumberField("seed", True, 0, MAX_SEED),
    )
}


def check_bool(name: str, value) -> bool:
    """``value`` if it is a bool; else raise :class:`FieldError`."""
    if not isinstance(value, bool):
        raise FieldError(name, f"must be true or false, got {show(value)}")
    return value


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
        """Check every field; raise :class:`FieldError` naming the first bad one. Returns ``self``."""
        if not isinstance(self.prompt, str):
            raise FieldError("prompt", f"must be a string, got {type(self.prompt).__name__}")
        try:
            self.prompt.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise FieldError(
                "prompt",
                f"contains an unpaired surrogate (U+{ord(self.prompt[exc.start]):04X}) at "
                f"position {exc.start}, which is not text a tokenizer can encode; remove it or "
                "pair it",
            ) from None
        _check_pattern(self.pattern)
        check_bool("stop_after_match", self.stop_after_match)
        for name, field in FIELDS.items():
            value = getattr(self, name)
            if name == "seed" and value is None:
                continue
            field.check(value)
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
            raise FieldError("pattern", "must be a string or a non-empty list of strings, got []")
        for i, item in enumerate(pattern):
            if not isinstance(item, str):
                raise FieldError(f"pattern[{i}]", f"must be a string, got {type(item).__name__}")
        return
    raise FieldError(
        "pattern", f"must be a string or a list of strings, got {type(pattern).__name__}"
    )
