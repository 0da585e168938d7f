"""Validation of ``POST /v1/completion/regex`` bodies: bytes in, a checked request out.

The body must be one JSON object (UTF-8, no duplicate keys, no ``NaN`` or ``Infinity``) whose
fields are exactly those below; anything else is a 400 whose message names the field, says what
was expected and shows (a short form of) what was sent.

=====================  ==========================  =========  =================================
field                  JSON type                   default    range
=====================  ==========================  =========  =================================
``prompt``             string                      required   at most ``max_prompt_chars``
``pattern``            string or list of strings   required   1 to ``max_patterns`` patterns,
                                                              each at most ``max_pattern_chars``
``max_new_tokens``     integer                     5          1 to ``max_new_tokens_limit``
``stop_after_match``   boolean                     true
``top_k``              integer                     50         0 (off) to 2**31 - 1
``top_p``              number                      1.0        greater than 0, at most 1
``temperature``        number                      1.0        at least 0 (0 is greedy)
``repetition_penalty`` number                      1.0        greater than 0
``seed``               integer or null             null       0 to 2**63 - 1
``stream``             boolean                     false
=====================  ==========================  =========  =================================

Type rules, strictly: ``true``/``false`` are never numbers; an integer field refuses ``5.0``; a
number field takes integers too (``"top_p": 1`` is 1.0); numbers must be finite. ``null`` for an
optional field means its default. Strings may not contain U+0000 or unpaired surrogates (they
cannot be tokenized faithfully).
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, fields
from typing import Any

from regexlm.generation.request import GenerationRequest
from regexlm.server.errors import APIError
from regexlm.server.limits import Limits

# The sampling defaults are the generation layer's: one source for the library and the API.
_DEFAULTS = {f.name: f.default for f in fields(GenerationRequest) if f.default is not MISSING}

MAX_TOP_K = 2**31 - 1
MAX_SEED = 2**63 - 1

REQUIRED = ("prompt", "pattern")
OPTIONAL = (
    "max_new_tokens",
    "stop_after_match",
    "top_k",
    "top_p",
    "temperature",
    "repetition_penalty",
    "seed",
    "stream",
)
FIELDS = REQUIRED + OPTIONAL

EXAMPLE = (
    '{"prompt": "The date today is ", "pattern": "\\\\d{4}-\\\\d{2}-\\\\d{2}", '
    '"max_new_tokens": 12}'
)


@dataclass(frozen=True)
class CompletionParams:
    """A validated completion request."""

    prompt: str
    patterns: tuple[str, ...]
    pattern_is_list: bool = False
    max_new_tokens: int = _DEFAULTS["max_new_tokens"]
    stop_after_match: bool = _DEFAULTS["stop_after_match"]
    top_k: int = _DEFAULTS["top_k"]
    top_p: float = _DEFAULTS["top_p"]
    temperature: float = _DEFAULTS["temperature"]
    repetition_penalty: float = _DEFAULTS["repetition_penalty"]
    seed: int | None = _DEFAULTS["seed"]
    stream: bool = False

    @property
    def pattern(self) -> str | list[str]:
        """The pattern as the generation layer takes it: a string, or a list when one was sent."""
        return list(self.patterns) if self.pattern_is_list else self.patterns[0]

    def generation_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`regexlm.generation.GenerationRequest`."""
        return {f.name: getattr(self, f.name) for f in fields(GenerationRequest)}


def bad_request(message: str) -> APIError:
    return APIError(400, message)


def _show(value: Any) -> str:
    """A short JSON rendering of a value for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _reject_constant(name: str) -> Any:
    raise bad_request(
        f"The request body is not valid JSON: {name} is not a JSON number. "
        "Send finite numbers only."
    )


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise bad_request(
                f"The request body sets the field {_show(key)} twice; send each field once."
            )
        result[key] = value
    return result


def decode_json_object(body: bytes) -> dict[str, Any]:
    """Parse the body as one JSON object, or raise a 400 that says what is wrong with it."""
    if not body.strip():
        raise bad_request(f"The request body is empty. Send a JSON object, for example {EXAMPLE}.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(
            f"The request body is not valid UTF-8 (byte {exc.start}). Send JSON encoded as UTF-8."
        ) from None
    try:
        data = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_object_without_duplicates
        )
    except json.JSONDecodeError as exc:
        raise bad_request(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}. Send a JSON object, for example {EXAMPLE}."
        ) from None
    except RecursionError:
        raise bad_request(
            "The request body nests JSON too deeply. Send a flat JSON object."
        ) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise bad_request(f"The request body is not usable JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise bad_request(
            f"The request body must be a JSON object, not {_json_type(data)}. "
            f"For example {EXAMPLE}."
        )
    return data


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise bad_request(f"'{name}' must be a string, got {_json_type(value)} ({_show(value)}).")
    if "\x00" in value:
        raise bad_request(
            f"'{name}' contains a NUL character (U+0000); remove it. "
            "A pattern can still match NUL with the escape \\x00."
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise bad_request(
            f"'{name}' contains an unpaired surrogate at position {exc.start}; "
            "send valid Unicode text."
        ) from None
    return value


def _check_int(name: str, value: Any, low: int, high: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{name}' must be an integer, got {_json_type(value)} ({_show(value)}).")
    if not low <= value <= high:
        raise bad_request(f"'{name}' must be between {low} and {high}, got {_show(value)}.{hint}")
    return value


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"'{name}' must be a number, got {_json_type(value)} ({_show(value)}).")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise bad_request(f"'{name}' must be a finite number, got {_show(value)}.")
    return number


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise bad_request(
            f"'{name}' must be true or false, got {_json_type(value)} ({_show(value)})."
        )
    return value


def _check_patterns(value: Any, limits: Limits) -> tuple[tuple[str, ...], bool]:
    if isinstance(value, str):
        patterns, is_list = [value], False
    elif isinstance(value, list):
        if not value:
            raise bad_request(
                "'pattern' is an empty list; send a pattern string or a non-empty "
                "list of pattern strings."
            )
        if len(value) > limits.max_patterns:
            raise bad_request(
                f"'pattern' lists {len(value)} patterns; this server accepts at most "
                f"{limits.max_patterns}. Combine them or send fewer."
            )
        patterns, is_list = value, True
    else:
        raise bad_request(
            f"'pattern' must be a string or a list of strings, got "
            f"{_json_type(value)} ({_show(value)})."
        )
    for i, pattern in enumerate(patterns):
        name = f"pattern[{i}]" if is_list else "pattern"
        _check_text(name, pattern)
        if len(pattern) > limits.max_pattern_chars:
            raise bad_request(
                f"'{name}' is {len(pattern)} characters long; this server accepts at "
                f"most {limits.max_pattern_chars}. Shorten the pattern."
            )
    return tuple(patterns), is_list


def parse_completion_request(body: bytes, limits: Limits) -> CompletionParams:
    """Validate a request body against the table above and the server's ``limits``."""
    data = decode_json_object(body)
    unknown = sorted(key for key in data if key not in FIELDS)
    if unknown:
        names = ", ".join(_show(key) for key in unknown[:5])
        raise bad_request(
            f"Unknown field{'s' if len(unknown) > 1 else ''} {names}. "
            f"The accepted fields are: {', '.join(FIELDS)}."
        )
    for key in REQUIRED:
        if data.get(key) is None:
            raise bad_request(f"The field '{key}' is required. For example {EXAMPLE}.")

    prompt = _check_text("prompt", data["prompt"])
    if len(prompt) > limits.max_prompt_chars:
        raise bad_request(
            f"'prompt' is {len(prompt)} characters long; this server accepts at most "
            f"{limits.max_prompt_chars}. Shorten the prompt."
        )
    patterns, is_list = _check_patterns(data["pattern"], limits)

    values: dict[str, Any] = {}
    given = {key: data[key] for key in OPTIONAL if data.get(key) is not None}
    if "max_new_tokens" in given:
        values["max_new_tokens"] = _check_int(
            "max_new_tokens",
            given["max_new_tokens"],
            1,
            limits.max_new_tokens_limit,
            " (the upper bound is this server's limit)",
        )
    if "top_k" in given:
        values["top_k"] = _check_int(
            "top_k", given["top_k"], 0, MAX_TOP_K, " Use 0 to disable top-k."
        )
    if "seed" in given:
        values["seed"] = _check_int("seed", given["seed"], 0, MAX_SEED)
    for name in ("stop_after_match", "stream"):
        if name in given:
            values[name] = _check_bool(name, given[name])
    if "top_p" in given:
        top_p = _check_number("top_p", given["top_p"])
        if not 0.0 < top_p <= 1.0:
            raise bad_request(
                f"'top_p' must be greater than 0 and at most 1, got {_show(given['top_p'])}. "
                "Use 1 to disable top-p."
            )
        values["top_p"] = top_p
    if "temperature" in given:
        temperature = _check_number("temperature", given["temperature"])
        if temperature < 0.0:
            raise bad_request(
                f"'temperature' must be at least 0, got {_show(given['temperature'])}. "
                "Use 0 for greedy decoding."
            )
        values["temperature"] = temperature
    if "repetition_penalty" in given:
        penalty = _check_number("repetition_penalty", given["repetition_penalty"])
        if penalty <= 0.0:
            raise bad_request(
                f"'repetition_penalty' must be greater than 0, got "
                f"{_show(given['repetition_penalty'])}. Use 1 for no penalty."
            )
        values["repetition_penalty"] = penalty
    return CompletionParams(prompt=prompt, patterns=patterns, pattern_is_list=is_list, **values)
