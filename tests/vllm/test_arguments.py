"""The regexlm arguments of a vLLM request: types, pattern checks and conflicting options."""

from __future__ import annotations

import re
import warnings
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regexlm.vllm.arguments import RegexArguments, parse_arguments, request_arguments


def params(**fields):
    base = dict(
        extra_args=None,
        stop=None,
        stop_token_ids=None,
        ignore_eos=False,
        min_tokens=0,
        structured_outputs=None,
    )
    base.update(fields)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("extra", [None, {}, {"other": 1}, {"stop_after_match": False}])
def test_requests_without_regex_are_not_constrained(extra):
    assert request_arguments(params(extra_args=extra)) is None
    # ... and conflicting options are theirs to use.
    assert request_arguments(params(extra_args=extra, stop=["x"], ignore_eos=True)) is None


def test_a_pattern_or_a_list():
    got = request_arguments(params(extra_args={"regex": r"\d+"}))
    assert got == RegexArguments((r"\d+",), True)
    got = request_arguments(params(extra_args={"regex": ["a", "b+"], "stop_after_match": False}))
    assert got == RegexArguments(("a", "b+"), False)


@pytest.mark.parametrize("value", [5, None, [], ["a", 3], {"a": 1}, b"abc", [["a"]], True])
def test_a_regex_of_the_wrong_type_names_the_key(value):
    with pytest.raises(ValueError, match=r"extra_args\['regex'\] must be a pattern"):
        parse_arguments({"regex": value})


@pytest.mark.parametrize(
    ("value", "meaning"),
    [(True, True), (False, False), (1, True), (0, False), ("false", False), ("True", True)],
)
def test_stop_after_match_as_vllm_xargs_may_carry_it(value, meaning):
    assert parse_arguments({"regex": "a", "stop_after_match": value}).stop_after_match is meaning


@pytest.mark.parametrize("value", [2, "yes", None, 0.0, 1.0, [True]])
def test_stop_after_match_must_be_a_boolean(value):
    with pytest.raises(ValueError, match=r"stop_after_match'\] must be true or false"):
        parse_arguments({"regex": "a", "stop_after_match": value})


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("(a", "position 0"),
        ("a{3,2}", "position 2"),
        (r"(a)\1", "backreference"),
        ("(?=a)b", "lookahead"),
        ("(?<!a)b", "lookbehind"),
    ],
)
def test_bad_patterns_are_refused_with_the_reason(pattern, words):
    with pytest.raises(ValueError) as info:
        request_arguments(params(extra_args={"regex": pattern}))
    message = str(info.value)
    assert words in message and repr(pattern) in message


def test_the_bad_entry_of_a_list_is_named():
    with pytest.raises(ValueError, match=r"extra_args\['regex'\]\[1\]"):
        request_arguments(params(extra_args={"regex": ["ok", "(bad"]}))


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("stop", ["\n"], "stop strings"),
        ("stop_token_ids", [13], "stop_token_ids"),
        ("ignore_eos", True, "ignore_eos"),
        ("min_tokens", 3, "min_tokens"),
        ("structured_outputs", object(), "structured_outputs"),
    ],
)
def test_options_that_end_the_text_elsewhere_are_refused(option, value, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        request_arguments(params(extra_args={"regex": "a+"}, **{option: value}))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab()[]{}|*+?\\^$.,-0123456789dws", max_size=12))
def test_every_pattern_re_refuses_is_refused(pattern):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(pattern)
    except re.error as exc:
        with pytest.raises(ValueError) as info:
            request_arguments(params(extra_args={"regex": pattern}))
        if exc.pos is not None:
            assert f"position {exc.pos}" in str(info.value)
    except (OverflowError, RecursionError):
        pass
