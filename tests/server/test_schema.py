"""Request validation: every field's type and range, JSON corner cases, the server's limits."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regexlm.server import schema
from regexlm.server.errors import APIError
from regexlm.server.limits import Limits
from regexlm.server.schema import MAX_SEED, MAX_TOP_K, parse_completion_request

LIMITS = Limits(max_new_tokens_limit=64, max_prompt_chars=100, max_patterns=3, max_pattern_chars=20)


def parse(body) -> object:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_completion_request(raw, LIMITS)


def refused(body) -> str:
    with pytest.raises(APIError) as info:
        parse(body)
    assert info.value.status == 400
    return info.value.message


def with_(**fields):
    return {"prompt": "p", "pattern": "a+", **fields}


def test_defaults_follow_the_design():
    params = parse({"prompt": "hello", "pattern": "a+"})
    assert (params.prompt, params.pattern, params.patterns) == ("hello", "a+", ("a+",))
    assert params.max_new_tokens == 5 and params.stop_after_match is True
    assert params.top_k == 50 and params.top_p == 1.0 and params.temperature == 1.0
    assert params.repetition_penalty == 1.0 and params.seed is None and params.stream is False


def test_every_field_is_taken():
    params = parse(
        with_(
            pattern=["a", "b+"],
            max_new_tokens=64,
            stop_after_match=False,
            top_k=0,
            top_p=0.5,
            temperature=0,
            repetition_penalty=1.3,
            seed=MAX_SEED,
            stream=True,
        )
    )
    assert params.pattern == ["a", "b+"] and params.pattern_is_list
    kwargs = params.generation_kwargs()
    assert kwargs == {
        "prompt": "p",
        "pattern": ["a", "b+"],
        "max_new_tokens": 64,
        "stop_after_match": False,
        "top_k": 0,
        "top_p": 0.5,
        "temperature": 0.0,
        "repetition_penalty": 1.3,
        "seed": MAX_SEED,
    }
    assert params.stream is True


def test_numbers_accept_integers_and_null_means_default():
    params = parse(with_(top_p=1, temperature=2, repetition_penalty=1, top_k=None, seed=None))
    assert params.top_p == 1.0 and isinstance(params.top_p, float)
    assert params.temperature == 2.0 and params.top_k == 50 and params.seed is None


@pytest.mark.parametrize(
    "body, words",
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"[]", "must be a JSON object"),
        (b'"prompt"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'{"prompt": "a", "pattern": "b", "top_p": NaN}', "NaN"),
        (b'{"prompt": "a", "pattern": "b", "temperature": Infinity}', "Infinity"),
        (b'{"prompt": "a", "pattern": "b", "temperature": 1e999}', "finite"),
        (b'{"prompt": "a", "prompt": "b", "pattern": "c"}', "twice"),
        (b"[" * 5000 + b"]" * 5000, "too deeply"),
        (b'{"prompt": "a", "pattern": "b", "seed": 1' + b"0" * 5000 + b"}", "too many digits"),
    ],
)
def test_malformed_bodies(body, words):
    message = refused(body)
    assert words in message
    assert "sys." not in message  # nothing of Python's own advice to its programmers


@pytest.mark.parametrize(
    "body, words",
    [
        ({"pattern": "a"}, "'prompt' is required"),
        ({"prompt": "a"}, "'pattern' is required"),
        ({"prompt": None, "pattern": "a"}, "'prompt' is required"),
        (with_(foo=1), 'Unknown field "foo"'),
        (with_(Prompt="x"), "Unknown field"),
        (with_(foo=1, bar=2), "Unknown fields"),
    ],
)
def test_missing_and_unknown_fields(body, words):
    message = refused(body)
    assert words in message
    if "Unknown" in words:
        assert "prompt, pattern, max_new_tokens" in message  # says what is accepted


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("prompt", 5, "'prompt' must be a string"),
        ("prompt", ["a"], "'prompt' must be a string"),
        ("prompt", "a\x00b", "NUL"),
        ("prompt", "x" * 101, "at most 100"),
        ("pattern", 5, "string or a list of strings"),
        ("pattern", {"a": 1}, "string or a list of strings"),
        ("pattern", [], "empty list"),
        ("pattern", ["a", 1], "'pattern[1]' must be a string"),
        ("pattern", ["a"] * 4, "at most 3"),
        ("pattern", "a" * 21, "at most 20"),
        ("pattern", ["a", "b" * 21], "'pattern[1]' is 21 characters"),
        ("pattern", "a\x00", "NUL"),
        ("max_new_tokens", True, "must be an integer"),
        ("max_new_tokens", 5.0, "must be an integer"),
        ("max_new_tokens", "5", "must be an integer"),
        ("max_new_tokens", 0, "between 1 and 64"),
        ("max_new_tokens", 65, "64 is this server's limit"),
        ("max_new_tokens", -3, "between 1 and 64"),
        ("max_new_tokens", 10**30, "between 1 and 64"),
        ("stop_after_match", 1, "true or false"),
        ("stop_after_match", "true", "true or false"),
        ("top_k", False, "must be an integer"),
        ("top_k", 1.5, "must be an integer"),
        ("top_k", -1, "between 0 and"),
        ("top_k", MAX_TOP_K + 1, "between 0 and"),
        ("top_p", -0.0001, "between 0 and 1"),
        ("top_p", 1.0000001, "between 0 and 1"),
        ("top_p", -0.5, "between 0 and 1"),
        ("top_p", 1e300, "between 0 and 1"),
        ("top_p", True, "must be a number"),
        ("top_p", "0.9", "must be a number"),
        ("temperature", -0.01, "0 (greedy) or between 0.0001 and 10000"),
        ("temperature", [1], "must be a number"),
        ("temperature", 10**400, "finite"),
        ("temperature", 1e39, "0 (greedy) or between 0.0001 and 10000"),
        ("temperature", 1e300, "0 (greedy) or between 0.0001 and 10000"),
        ("temperature", 1e-300, "0 (greedy) or between 0.0001 and 10000"),
        ("repetition_penalty", 0, "between 0.0001 and 10000"),
        ("repetition_penalty", -1.0, "between 0.0001 and 10000"),
        ("repetition_penalty", 1e39, "between 0.0001 and 10000"),
        ("repetition_penalty", False, "must be a number"),
        ("seed", -1, "between 0 and"),
        ("seed", MAX_SEED + 1, "between 0 and"),
        ("seed", 1.0, "must be an integer"),
        ("stream", "yes", "true or false"),
        ("stream", 0, "true or false"),
    ],
)
def test_wrong_types_and_ranges(field, value, words):
    message = refused(with_(**{field: value}))
    assert words in message
    assert message.startswith(f"'{field}")
    assert len(message) < 400


@pytest.mark.parametrize("field", ["top_p", "temperature", "repetition_penalty", "top_k", "seed"])
def test_the_schema_and_the_library_share_one_rule_per_field(field):
    """The API's message for an out-of-range number is the library's, quoted."""
    from regexlm.generation import GenerationRequest
    from regexlm.generation.request import FIELDS, FieldError

    value = -1
    with pytest.raises(FieldError) as info:
        GenerationRequest("p", "a", **{field: value}).validate()
    assert refused(with_(**{field: value})) == f"'{field}' {info.value.problem}."
    if not FIELDS[field].integer:  # the module's table states the same range
        words = FIELDS[field].accepted().replace("between ", "").replace(" and ", " to ")
        assert words in " ".join(schema.__doc__.split())


def test_unpaired_surrogate_is_refused():
    assert "surrogate" in refused(b'{"prompt": "\\ud800", "pattern": "a"}')


def test_boundaries_are_inclusive_where_the_ranges_say_so():
    parse(with_(max_new_tokens=1))
    parse(with_(max_new_tokens=64))
    parse(with_(top_p=1.0, temperature=0.0, top_k=0, seed=0))
    parse(with_(top_p=0, temperature=1e-4, repetition_penalty=1e-4))
    parse(with_(temperature=1e4, repetition_penalty=1e4, top_k=MAX_TOP_K, seed=MAX_SEED))
    parse(with_(prompt="x" * 100, pattern=["a" * 20] * 3))
    parse(with_(prompt=""))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "prompt",
                "pattern",
                "max_new_tokens",
                "stop_after_match",
                "top_k",
                "top_p",
                "temperature",
                "repetition_penalty",
                "seed",
                "stream",
                "extra",
            ]
        ),
        json_values,
        max_size=8,
    )
)
def test_any_json_object_is_either_valid_or_a_400(body):
    try:
        params = parse(body)
    except APIError as exc:
        assert exc.status == 400 and exc.message
        return
    # Whatever passed holds every rule of the table.
    assert isinstance(params.prompt, str) and len(params.prompt) <= 100
    assert 1 <= params.max_new_tokens <= 64 and not isinstance(params.max_new_tokens, bool)
    assert 0 <= params.top_p <= 1 and 1e-4 <= params.repetition_penalty <= 1e4
    assert params.temperature == 0 or 0.99e-4 <= params.temperature <= 1e4
    assert 0 <= params.top_k <= MAX_TOP_K


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_a_400(raw):
    try:
        parse_completion_request(raw, LIMITS)
    except APIError as exc:
        assert exc.status == 400
