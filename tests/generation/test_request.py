"""Request validation names the bad field; Completion and TextStream are plain and exact."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regexlm.generation import Completion, GenerationRequest
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
        ("top_p", 0.0),
        ("top_p", 1.01),
        ("top_p", float("nan")),
        ("top_p", "0.9"),
        ("temperature", -0.1),
        ("temperature", float("inf")),
        ("repetition_penalty", 0.0),
        ("repetition_penalty", -1.0),
        ("seed", -1),
        ("seed", 2**64),
        ("seed", 1.0),
    ],
)
def test_validation_names_the_bad_field(field, value):
    fields = {"prompt": "p", "pattern": "x", field: value}
    with pytest.raises(ValueError, match=f"^{field}"):
        GenerationRequest(**fields).validate()


def test_pattern_list_items_must_be_strings():
    with pytest.raises(ValueError, match=r"^pattern\[1\]"):
        GenerationRequest("p", ["a", 2]).validate()


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
