"""Request validation names the bad field; Completion and TextStream are plain and exact.

The numeric ranges are checked the way the sampling step computes (float32, int32): every value
validation accepts is finite and in range there, and a step run with the extremes of the accepted
ranges draws allowed tokens only.
"""

from __future__ import annotations

import codecs
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from regexlm.generation import Completion, GenerationRequest
from regexlm.generation.request import (
    FIELDS,
    MAX_REPETITION_PENALTY,
    MAX_TEMPERATURE,
    MIN_REPETITION_PENALTY,
    MIN_TEMPERATURE,
    FieldError,
    as_float32,
)
from regexlm.generation.text import TextStream


def test_defaults_follow_the_api():
    r = GenerationRequest("p", "x")
    assert (
        r.max_new_tokens,
        r.stop_after_match,
        r.top_k,
        r.top_p,
        r.temperature,
        r.repetition_penalty,
        r.seed,
    ) == (5, True, 50, 1.0, 1.0, 1.0, None)
    assert r.validate() is r


@pytest.mark.parametrize(
    "field, value",
    [
        ("prompt", None),
        ("prompt", 3),
        ("pattern", None),
        ("pattern", []),
        ("pattern", 5),
        ("max_new_tokens", 0),
        ("max_new_tokens", -1),
        ("max_new_tokens", 2.5),
        ("max_new_tokens", True),
        ("max_new_tokens", "5"),
        ("stop_after_match", "yes"),
        ("stop_after_match", 1),
        ("top_k", -1),
        ("top_k", 1.5),
        ("top_k", 2**31),
        ("top_p", -0.0001),
        ("top_p", 1.01),
        ("top_p", 1.0000001),
        ("top_p", float("-inf")),
        ("top_p", float("nan")),
        ("top_p", "0.9"),
        ("temperature", -0.1),
        ("temperature", float("inf")),
        ("temperature", float("nan")),
        ("temperature", 1e39),  # finite in float64, inf in float32
        ("temperature", 1e300),
        ("temperature", 10**400),  # an int no float holds
        ("temperature", 1e-300),  # underflows to 0 in float32: not silently greedy
        ("temperature", 5e-5),
        ("temperature", 1e-45),
        ("temperature", 10001),
        ("temperature", True),
        ("repetition_penalty", 0.0),
        ("repetition_penalty", -1.0),
        ("repetition_penalty", 1e-300),
        ("repetition_penalty", 1e39),
        ("repetition_penalty", float("nan")),
        ("max_new_tokens", 2**31),
        ("max_new_tokens", 10**400),
        ("seed", -1),
        ("seed", 2**64),
        ("seed", 1.0),
    ],
)
def test_validation_names_the_bad_field(field, value):
    fields = {"prompt": "p", "pattern": "x", field: value}
    with pytest.raises(FieldError, match=f"^{field} ") as info:
        GenerationRequest(**fields).validate()
    assert info.value.field == field and isinstance(info.value, ValueError)
    assert len(str(info.value)) < 200
    kind_error = "must be an integer" in str(info.value) or "must be a number" in str(info.value)
    if field in FIELDS and not kind_error:
        # A number of the right kind but out of range (or not finite) is told the range.
        assert FIELDS[field].accepted() in str(info.value)


def test_pattern_list_items_must_be_strings():
    with pytest.raises(ValueError, match=r"^pattern\[1\]"):
        GenerationRequest("p", ["a", 2]).validate()


@pytest.mark.parametrize("pattern", [None, b"a", 3, {"a": 1}])
def test_a_pattern_neither_text_nor_a_list_is_refused_by_name(tiny_generator, pattern):
    with pytest.raises(
        FieldError, match=f"^pattern must be a string .* got {type(pattern).__name__}"
    ):
        tiny_generator.generate("p", pattern, max_new_tokens=2)


@pytest.mark.parametrize("prompt", ["\ud800", "ab\udfffc"])
def test_a_prompt_with_an_unpaired_surrogate_is_refused_by_name(tiny_generator, prompt):
    with pytest.raises(FieldError, match="^prompt contains an unpaired surrogate") as info:
        tiny_generator.generate(prompt, "a", max_new_tokens=2)
    assert f"position {prompt.index(next(c for c in prompt if 0xD800 <= ord(c) < 0xE000))}" in str(
        info.value
    )


def test_valid_edges_pass():
    GenerationRequest(
        "",
        ["a", "b"],
        max_new_tokens=1,
        top_k=0,
        top_p=1.0,
        temperature=0,
        repetition_penalty=0.5,
        seed=0,
    ).validate()
    assert GenerationRequest("p", ("a", "b")).patterns == ("a", "b")
    for temperature in (0.0, -0.0, MIN_TEMPERATURE, MAX_TEMPERATURE, 1):
        GenerationRequest("p", "x", temperature=temperature).validate()
    for penalty in (MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY, 1):
        GenerationRequest("p", "x", repetition_penalty=penalty).validate()
    GenerationRequest("p", "x", top_p=0, top_k=2**31 - 1, max_new_tokens=2**31 - 1).validate()
    GenerationRequest("p", "x", seed=2**63 - 1).validate()


def _maybe(name, value):
    """(passed, error) of one field's check."""
    try:
        return FIELDS[name].check(value), None
    except FieldError as exc:
        return None, exc


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["top_p", "temperature", "repetition_penalty"]),
    value=st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.sampled_from([0.0, -0.0, 1e-4, 1e4, 1e-45, 3.4e38, 3.5e38, 1e-38, 1.0, 0.99999999]),
)
def test_accepted_floats_are_finite_and_in_range_in_float32(name, value):
    accepted, error = _maybe(name, value)
    field = FIELDS[name]
    if error is not None:
        assert error.field == name and field.accepted() in str(error)
        return
    single = as_float32(accepted)
    assert math.isfinite(single)
    if field.zero and value == 0:
        assert single == 0.0
    else:
        assert as_float32(field.low) <= single <= as_float32(field.high)
        # A positive value never reaches the step as 0 (temperature 0 would mean greedy).
        assert single > 0 or field.low == 0
    assert float(torch.tensor(accepted, dtype=torch.float32)) == single


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(["max_new_tokens", "top_k", "seed"]),
    value=st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from([2**31 - 1, 2**31]),
)
def test_accepted_integers_fit_the_device_types(name, value):
    accepted, error = _maybe(name, value)
    if error is not None:
        assert error.field == name
        return
    dtype = torch.int64 if name == "seed" else torch.int32
    assert int(torch.tensor(accepted, dtype=dtype)) == accepted


EXTREMES = {
    "temperature": [0.0, MIN_TEMPERATURE, 1.0, MAX_TEMPERATURE],
    "repetition_penalty": [MIN_REPETITION_PENALTY, 1.0, MAX_REPETITION_PENALTY],
    "top_p": [0.0, 1e-30, 0.5, 1.0],
    "top_k": [0, 1, 3, 2**31 - 1],
}


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.fixed_dictionaries({name: st.sampled_from(values) for name, values in EXTREMES.items()}),
        min_size=1,
        max_size=4,
    ),
    scale=st.sampled_from([1e-3, 1.0, 1e4, 1e20]),
    seed=st.integers(0, 2**16),
)
def test_a_step_at_the_extremes_of_the_ranges_draws_allowed_tokens(rows, scale, seed):
    """Logits up to 1e20 in magnitude, divided by the smallest penalty and temperature we
    accept, stay finite in float32: every row draws an allowed token, no NaN anywhere."""
    from regexlm import ops
    from regexlm.ops.testing import random_tables

    V = 97
    tables = random_tables(6, V, num_classes=9, allow_prob=0.6, seed=seed)
    for row in rows:  # the library's own check of what the step gets
        GenerationRequest("p", "x", **row).validate()
    B = len(rows)
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, V, generator=g) * scale  # [B, V]
    column = {
        name: torch.tensor([row[name] for row in rows], dtype=torch.float32)
        for name in ("temperature", "top_p", "repetition_penalty")
    }
    states = torch.randint(1, 6, (B,), generator=g, dtype=torch.int32)
    result = ops.sample_step(
        logits,
        states,
        torch.full((B,), -1, dtype=torch.int32),
        column["temperature"],
        torch.tensor([row["top_k"] for row in rows], dtype=torch.int32),
        column["top_p"],
        column["repetition_penalty"],
        torch.rand(B, V, generator=g) < 0.3,
        tables,
        seed=seed,
        backend="torch",
    )
    allowed = tables.next_by_class[states.long()][:, tables.class_of.long()] >= 0  # [B, V]
    for b in range(B):
        if not bool(allowed[b].any()):
            assert bool(result.no_allowed[b])
            continue
        token = int(result.tokens[b])
        assert 0 <= token < V and bool(allowed[b, token]), (rows[b], token)


def test_completion_to_dict():
    c = Completion("ab", 2, "pattern_match", True, 0, [1, 2], {"compile_s": 0.0})
    assert c.to_dict() == {
        "completion": "ab",
        "tokens_generated": 2,
        "stop_reason": "pattern_match",
        "matched": True,
        "pattern_index": 0,
        "token_ids": [1, 2],
        "timings": {"compile_s": 0.0},
    }


@given(data=st.binary(max_size=40), cuts=st.lists(st.integers(0, 40), max_size=8))
def test_text_stream_deltas_concatenate_to_the_replace_decoding(data, cuts):
    stream = TextStream()
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    deltas = [stream.push(data[a:b]) for a, b in zip(points, points[1:], strict=False)]
    deltas.append(stream.finish())
    assert "".join(deltas) == data.decode("utf-8", errors="replace") == stream.text
    assert stream.data == data


@given(text=st.text(max_size=20))
def test_text_stream_never_emits_half_characters(text):
    data = text.encode("utf-8")
    stream = TextStream()
    deltas = [stream.push(data[i : i + 1]) for i in range(len(data))]
    assert "".join(deltas) == text
    assert stream.is_complete()
    assert stream.finish() == ""
    assert codecs.decode(data, "utf-8") == text
