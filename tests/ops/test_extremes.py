"""Every backend over the whole accepted range of every input, token for token.

Hypothesis draws small steps whose parameters sit anywhere in their ranges and at their edges:
temperatures from subnormal to FLT_MAX and +inf (and 0, negative, NaN: greedy), top_p in [0, 1]
and beyond, top_k from 0 past V, penalties from tiny to huge, logits with ties, +-inf, NaN and
FLT_MAX in every dtype, budgets and ``min_tokens`` at INT32 max and min, states, classes and
next states out of range, empty allowed sets, odd vocabulary sizes, explicit noise at 0, 1 and
NaN, and seeds at the int64 extremes. Each step runs on the torch reference, the Triton kernel
(its interpreter here) and the CUDA kernel of ``csrc/`` (host emulation here); the three must
return the same tokens and states, and each token must obey the contract: allowed (so its next
state is a state), the greedy token for greedy and degenerate rows, -1 exactly when nothing is
allowed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regexlm.ops.types import INT32_MAX, IndexTables
from tests.ops import emulated_cuda
from tests.ops.oracle import loop_step, run_backend

# the interpreter's numpy reports the overflows these inputs are made of (x / tiny, exp(big))
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

FLT_MAX = 3.4028234663852886e38
INF, NAN = math.inf, math.nan
INT32_MIN = -(2**31)

SPECIAL_LOGITS = [0.0, -0.0, 1.0, -1.0, 2.5, INF, -INF, NAN, FLT_MAX, -FLT_MAX, 1e-45, 65504.0]
TEMPERATURES = [0.0, -1.0, NAN, 1e-45, 1e-38, 1.1754944e-38, 1e-3, 0.5, 1.0, 3.0, 1e30]
TEMPERATURES += [FLT_MAX, INF]
PENALTIES = [1e-38, 1e-30, 0.5, 1.0, 1.3, 1e30, FLT_MAX]
BUDGETS = [-1, 0, 1, 2, 3, 7, INT32_MAX, INT32_MIN]
MIN_TOKENS = [0, 0, 1, 2, 5, INT32_MAX, INT32_MAX, -1, INT32_MIN]

finite_logit = st.floats(-30, 30, width=32)
logit = st.one_of(finite_logit, finite_logit, st.sampled_from(SPECIAL_LOGITS))


@st.composite
def steps(draw):
    """One step's inputs (CPU tensors) as a dict for `run_backend`."""
    B = draw(st.integers(1, 3))
    V = draw(st.sampled_from([1, 2, 5, 17, 31, 33, 47]))
    S = draw(st.integers(1, 4))
    C = draw(st.integers(1, 5))
    ints = st.integers
    nbc = draw(st.lists(ints(-1, S - 1) | ints(-3, S + 2), min_size=S * C, max_size=S * C))
    class_of = draw(st.lists(ints(0, C - 1) | ints(-2, C + 1), min_size=V, max_size=V))
    tables = IndexTables(
        torch.tensor(nbc, dtype=torch.int32).view(S, C),
        torch.tensor(class_of, dtype=torch.int32),
        torch.tensor(draw(st.lists(st.sampled_from(MIN_TOKENS), min_size=S, max_size=S))),
    )
    if draw(st.booleans()):  # ties: a few distinct values only
        pool = draw(st.lists(logit, min_size=1, max_size=3))
        values = draw(st.lists(st.sampled_from(pool), min_size=B * V, max_size=B * V))
    else:
        values = draw(st.lists(logit, min_size=B * V, max_size=B * V))
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
    row = st.lists
    a = dict(
        logits=torch.tensor(values, dtype=torch.float32).view(B, V).to(dtype),
        states=torch.tensor(
            draw(row(ints(0, S - 1) | st.sampled_from([-1, S, INT32_MAX]), min_size=B, max_size=B)),
            dtype=torch.int32,
        ),
        budgets=torch.tensor(draw(row(st.sampled_from(BUDGETS), min_size=B, max_size=B))),
        temperature=torch.tensor(
            draw(row(st.sampled_from(TEMPERATURES) | st.floats(1e-3, 1e3), min_size=B, max_size=B))
        ),
        top_k=torch.tensor(
            draw(row(ints(0, V + 2) | st.sampled_from([-5, INT32_MAX]), min_size=B, max_size=B)),
            dtype=torch.int32,
        ),
        top_p=torch.tensor(
            draw(
                row(
                    st.floats(0, 1) | st.sampled_from([0.0, 1e-30, 1.0, 1.5, -0.5, NAN]),
                    min_size=B,
                    max_size=B,
                )
            )
        ),
        repetition_penalty=torch.tensor(
            draw(row(st.sampled_from(PENALTIES) | st.floats(0.1, 10), min_size=B, max_size=B))
        ),
        seen=(
            torch.tensor(draw(row(st.booleans(), min_size=B * V, max_size=B * V))).view(B, V)
            if draw(st.booleans())
            else None
        ),
        tables=tables,
    )
    for key in ("budgets", "temperature", "top_p", "repetition_penalty"):
        a[key] = a[key].to(torch.int32 if key == "budgets" else torch.float32)
    if draw(st.booleans()):
        edges = st.sampled_from([0.0, 1.0, NAN, 1e-45, 0.5, 1 - 2**-24])
        u = draw(row(st.floats(0, 1, width=32) | edges, min_size=B * V, max_size=B * V))
        a["noise"] = torch.tensor(u, dtype=torch.float32).view(B, V)
    else:
        seeds = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, -1, 2**63 - 1])
        a["seeds"] = torch.tensor(draw(row(seeds, min_size=B, max_size=B)), dtype=torch.int64)
        a["steps"] = torch.tensor(
            draw(row(st.integers(INT32_MIN, INT32_MAX), min_size=B, max_size=B)),
            dtype=torch.int32,
        )
    return a


def _contract(a, result):
    """The rules every backend's answer must obey, checked from the inputs alone."""
    t = a["tables"]
    nbc, class_of, min_tokens = (x.long() for x in (t.next_by_class, t.class_of, t.min_tokens))
    S, C = nbc.shape
    x = a["logits"].float()
    for b in range(x.shape[0]):
        s, R = int(a["states"][b]), int(a["budgets"][b])
        allowed = []
        if 0 <= s < S:
            for tok in range(x.shape[1]):
                c = int(class_of[tok])
                n = int(nbc[s, c]) if 0 <= c < C else -1
                if 0 <= n < S and (R < 0 or min_tokens[s] > R or min_tokens[n] < R):
                    allowed.append(tok)
        token = int(result.tokens[b])
        if not allowed:
            assert token == -1 and bool(result.no_allowed[b]) and int(result.next_states[b]) == s
            continue
        assert token in allowed and not bool(result.no_allowed[b])
        assert int(result.next_states[b]) == int(nbc[s, class_of[token]])
        temp = float(a["temperature"][b])
        if not temp > 0:  # greedy: the largest penalised logit, NaN as -inf, lowest id
            p = float(a["repetition_penalty"][b])
            with np.errstate(all="ignore"):
                pen = [
                    float(np.float32(v * p) if v < 0 else np.float32(v / p))
                    if a["seen"] is not None and bool(a["seen"][b, i])
                    else v
                    for i, v in enumerate(x[b].tolist())
                ]
            vals = [-INF if math.isnan(pen[i]) else pen[i] for i in allowed]
            assert token == allowed[vals.index(max(vals))]


BACKENDS = ["torch", "triton"] + (["cuda-emu"] if emulated_cuda.available() else [])


@pytest.mark.parametrize("split", [1, 3], ids=["row", "split"])
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(a=steps())
def test_backends_agree_and_obey_the_contract_at_the_extremes(a, split):
    results = {}
    for name in BACKENDS:
        kw = {"block": 16, "split": split} if name == "triton" else {}
        if name == "cuda-emu":
            kw = {"split": split}
        results[name] = run_backend(name, a, **kw)
    want = results["torch"]
    _contract(a, want)
    for name, got in results.items():
        assert got.tokens.tolist() == want.tokens.tolist(), name
        assert got.next_states.tolist() == want.next_states.tolist(), name
        assert got.no_allowed.tolist() == want.no_allowed.tolist(), name
    tokens, states, empty = loop_step(**a)  # the plain statement of the specification
    assert want.tokens.tolist() == tokens
    assert want.next_states.tolist() == states
    assert want.no_allowed.tolist() == empty
