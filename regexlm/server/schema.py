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
``top_p``              number                      1.0        0 to 1 (1 is off)
``temperature``        number                      1.0        0 (greedy) or 0.0001 to 10000
``repetition_penalty`` number                      1.0        0.0001 to 10000 (1 is off)
``seed``               integer or null             null       0 to 2**63 - 1
``stream``             boolean                     false
=====================  ==========================  =========  =================================

The numeric rules are the generation layer's (:data:`regexlm.generation.request.FIELDS`): the
same objects check a library call and a JSON body, in the precision the sampling step uses
(float32), so a number that is finite in JSON but not in float32 is refused, never sent on.

Type rules, strictly: ``true``/``false`` are never numbers; an integer field refuses ``5.0``; a
number field takes integers too (``"top_p": 1`` is 1.0); numbers must be finite. ``null`` for an
optional field means its default. Strings may not contain U+0000 or unpaired surrogates (they
cannot be tokenized faithfully).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from typing import Any

from regexlm.generation.request import FIELDS as NUMBER_FIELDS
from regexlm.generation.request import (  # noqa: F401  (MAX_SEED, MAX_TOP_K: re-exported)
    MAX_SEED,
    MAX_TOP_K,
    PARAMETER_NAMES,
    FieldError,
    GenerationRequest,
    check_bool,
    show,
)
from regexlm.server.errors import APIError
from regexlm.server.limits import Limits

# The sampling defaults are the generation layer's: one source for the library and the API.
_DEFAULTS = {f.name: f.default for f in fields(GenerationRequest) if f.default is not MISSING}

REQUIRED = ("prompt", "pattern")
OPTIONAL = (*PARAMETER_NAMES, "stream")
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
                f"The request body sets the field {show(key)} twice; send each field once."
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
        if "digits" in str(exc):
            raise bad_request(
                "The request body holds a number with too many digits (thousands); "
                "send numbers in the ranges the fields accept."
            ) from None
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
        raise bad_request(f"'{name}' must be a string, got {_json_type(value)} ({show(value)}).")
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


def _field_error(exc: FieldError, limits: Limits) -> APIError:
    message = f"'{exc.field}' {exc.problem}."
    if exc.field == "max_new_tokens" and "between" in exc.problem:
        message += f" {limits.max_new_tokens_limit} is this server's limit."
    return bad_request(message)


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
            f"{_json_type(value)} ({show(value)})."
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
        names = ", ".join(show(key) for key in unknown[:5])
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
    try:
        for name, field in NUMBER_FIELDS.items():
            if name in given:
                top = limits.max_new_tokens_limit if name == "max_new_tokens" else None
                values[name] = field.check(given[name], top)
        for name in ("stop_after_match", "stream"):
            if name in given:
                values[name] = check_bool(name, given[name])
    except FieldError as exc:
        raise _field_error(exc, limits) from None
    return CompletionParams(prompt=prompt, patterns=patterns, pattern_is_list=is_list, **values)
