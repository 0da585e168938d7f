"""Backend choice, argument checks and `update_seen`."""

from __future__ import annotations

import importlib
import logging

import pytest
import torch

from regexlm.ops import (
    BackendUnavailableError,
    IndexTables,
    available_backends,
    resolve_backend,
    sample_step,
    update_seen,
)
from regexlm.ops.reference import sample_step_reference
from tests.ops.oracle import mixed_case


def test_auto_on_cpu_is_the_torch_reference():
    a = mixed_case(3, 100, seed=1)
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    got = sample_step(**a, backend="auto")
    want = sample_step_reference(**a)
    assert torch.equal(got.tokens, want.tokens)
    assert torch.equal(got.next_states, want.next_states)
    assert got.tokens.dtype == torch.int64
    assert got.next_states.dtype == torch.int32
    assert got.no_allowed.dtype == torch.bool
    assert available_backends("cpu") == ["torch"]


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_backends_on_cpu_tensors_raise_a_clear_error(backend):
    a = mixed_case(2, 50, seed=1)
    with pytest.raises(BackendUnavailableError, match=f"backend '{backend}' is unavailable.*CUDA"):
        sample_step(**a, backend=backend)


def test_tables_may_be_passed_as_index_keyword():
    a = mixed_case(3, 100, seed=2)
    tables = a.pop("tables")
    by_kw = sample_step(**a, index=tables)
    assert torch.equal(by_kw.tokens, sample_step(**a, tables=tables).tokens)
    with pytest.raises(TypeError, match="once"):
        sample_step(**a, tables=tables, index=tables)


def test_unknown_backend_and_bad_shapes_are_rejected():
    a = mixed_case(2, 50, seed=1)
    with pytest.raises(ValueError, match="backend must be one of"):
        sample_step(**a, backend="tpu")
    with pytest.raises(ValueError, match="top_k must have shape"):
        sample_step(**{**a, "top_k": torch.zeros(3, dtype=torch.int32)})
    with pytest.raises(ValueError, match="logits have 49 columns"):
        sample_step(**{**a, "logits": a["logits"][:, :49], "noise": None})
    with pytest.raises(ValueError, match="seen must be bool"):
        sample_step(**{**a, "seen": a["seen"].int()})


def test_seeds_reproduce_the_scalar_seed_is_seed_plus_row_and_none_is_fresh():
    a = mixed_case(4, 200, seed=3)
    a.pop("noise")
    a["temperature"] = torch.full((4,), 5.0)
    a["top_k"] = torch.zeros(4, dtype=torch.int32)
    a["top_p"] = torch.ones(4)
    a["budgets"] = torch.full((4,), -1, dtype=torch.int32)
    seeds, steps = a.pop("seeds"), a.pop("steps")
    x = sample_step(**a, seeds=seeds, steps=steps).tokens
    assert torch.equal(x, sample_step(**a, seeds=seeds, steps=steps).tokens)
    by_scalar = sample_step(**a, seed=5, step=2).tokens
    rows = torch.arange(4) + 5
    assert torch.equal(by_scalar, sample_step(**a, seeds=rows, steps=torch.full((4,), 2)).tokens)
    fresh = [sample_step(**a).tokens for _ in range(4)]
    assert any(not torch.equal(fresh[0], f) for f in fresh[1:])


def test_bad_seeds_and_tables_are_rejected_with_clear_errors():
    a = mixed_case(2, 50, seed=1)
    a.pop("noise")
    with pytest.raises(TypeError, match="pass the seeds once"):
        sample_step(**a, seed=3)
    with pytest.raises(ValueError, match=r"seeds must be a tensor of shape \[2\]"):
        sample_step(**{**a, "seeds": torch.zeros(3, dtype=torch.int64)})
    with pytest.raises(ValueError, match="steps must hold integers"):
        sample_step(**{**a, "steps": torch.zeros(2)})
    tables = a.pop("tables")
    with pytest.raises(TypeError, match="tensor attribute 'next_by_class'"):
        sample_step(**a, tables=object())
    short = IndexTables(tables.next_by_class, tables.class_of, tables.min_tokens[:-1])
    with pytest.raises(ValueError, match="min_tokens must have one entry per state"):
        sample_step(**a, tables=short)
    with pytest.raises(ValueError, match="next_by_class must be \\[R, C\\]"):
        sample_step(**a, tables=IndexTables(tables.class_of, tables.class_of, tables.min_tokens))
    rows = torch.zeros(tables.min_tokens.shape[0] + 1, dtype=torch.int32)
    with pytest.raises(ValueError, match="row_of and min_tokens must have one entry per state"):
        sample_step(
            **a, tables=IndexTables(tables.next_by_class, tables.class_of, tables.min_tokens, rows)
        )
    with pytest.raises(ValueError, match="row_of must be an int32 tensor"):
        sample_step(
            **a,
            tables=IndexTables(
                tables.next_by_class, tables.class_of, tables.min_tokens, rows[:-1].float()
            ),
        )


def test_a_bitmask_attribute_is_ignored():
    """The step reads next_by_class, class_of and min_tokens only: a stale or wrong bitmask on
    the index object changes nothing."""

    class WithBitmask:
        def __init__(self, tables, bitmask):
            self.next_by_class, self.class_of = tables.next_by_class, tables.class_of
            self.min_tokens, self.bitmask = tables.min_tokens, bitmask

    a = mixed_case(5, 90, seed=4)
    tables = a.pop("tables")
    want = sample_step(**a, tables=tables)
    for bitmask in (torch.zeros(7, 3, dtype=torch.int32), torch.full((1, 1), -1), None):
        got = sample_step(**a, tables=WithBitmask(tables, bitmask))
        assert torch.equal(got.tokens, want.tokens)
        assert torch.equal(got.next_states, want.next_states)


def test_update_seen_marks_new_tokens_and_skips_minus_one():
    seen = torch.zeros(3, 10, dtype=torch.bool)
    seen[2, 0] = True
    update_seen(seen, torch.tensor([4, -1, 9]))
    assert seen.nonzero().tolist() == [[0, 4], [2, 0], [2, 9]]
    update_seen(seen, torch.tensor([-1, -1, -1]))
    assert seen.nonzero().tolist() == [[0, 4], [2, 0], [2, 9]]


@pytest.fixture
def fresh_fallback_log(monkeypatch):
    dispatch = importlib.import_module("regexlm.ops.dispatch")
    monkeypatch.setattr(dispatch, "_fallbacks_logged", set())
    return dispatch


def _fallback_records(caplog):
    return [r for r in caplog.records if r.name == "regexlm.ops" and r.levelno >= logging.WARNING]


def test_auto_falling_back_from_cuda_says_why_once(fresh_fallback_log, monkeypatch, caplog):
    dispatch = fresh_fallback_log
    reason = "regexlm._C is not built (a reason made up by this test)"
    monkeypatch.setattr(dispatch, "_cuda_reason", lambda device, explicit=False: reason)
    monkeypatch.setattr(dispatch, "_triton_reason", lambda device: None)
    caplog.set_level(logging.INFO, logger="regexlm.ops")
    for _ in range(3):
        assert dispatch.resolve_backend("auto", torch.device("cuda")) == "triton"
    (record,) = _fallback_records(caplog)
    assert reason in record.getMessage() and "triton" in record.getMessage()
    assert "cuda" in record.getMessage()
    assert dispatch.resolve_backend("auto", torch.device("cpu")) == "torch"  # CPU: no news
    assert len(_fallback_records(caplog)) == 1


def test_auto_falling_back_to_torch_names_both_reasons(fresh_fallback_log, monkeypatch, caplog):
    dispatch = fresh_fallback_log
    monkeypatch.setattr(dispatch, "_cuda_reason", lambda device, explicit=False: "no nvcc here")
    monkeypatch.setattr(dispatch, "_triton_reason", lambda device: "no triton here")
    caplog.set_level(logging.INFO, logger="regexlm.ops")
    for _ in range(2):
        assert dispatch.resolve_backend("auto", torch.device("cuda")) == "torch"
    messages = [r.getMessage() for r in _fallback_records(caplog)]
    assert len(messages) == 2
    assert any("no nvcc here" in m and "torch" in m for m in messages)
    assert any("no triton here" in m and "torch" in m for m in messages)


def test_explicit_backends_raise_instead_of_logging(fresh_fallback_log, monkeypatch, caplog):
    dispatch = fresh_fallback_log
    monkeypatch.setattr(dispatch, "_triton_reason", lambda device: "no triton here")
    caplog.set_level(logging.INFO, logger="regexlm.ops")
    with pytest.raises(BackendUnavailableError, match="no triton here"):
        dispatch.resolve_backend("triton", torch.device("cuda"))
    assert _fallback_records(caplog) == []
