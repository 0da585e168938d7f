"""Draw frequencies against the probabilities after top-k / top-p (Pearson's chi-square).

The expected probabilities come from transformers' own processors, so the test checks the draw
(Gumbel-max over the kept set) and the truncation together. Noise is seeded, so every run draws
the same tokens: a p-value threshold cannot flake.
"""

from __future__ import annotations

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from tests.ops.oracle import chi_square_pvalue, run_backend, simple_inputs


def _expected(logits_row, t, k, p):
    scores = logits_row.clone().unsqueeze(0)
    ids = torch.zeros(1, 1, dtype=torch.long)
    scores = TemperatureLogitsWarper(t)(ids, scores)
    if k > 0:
        scores = TopKLogitsWarper(k)(ids, scores)
    if p < 1:
        scores = TopPLogitsWarper(p)(ids, scores)
    return torch.softmax(scores[0], 0)


def _draw_counts(backend, row, n, t, k, p, seeded):
    V = row.shape[0]
    logits = row.repeat(n, 1)
    a = simple_inputs(logits, temperature=t, top_k=k, top_p=p)
    kw = {}
    if seeded:
        a.pop("noise")
        kw = dict(seed=1234, step=5)
    else:
        a["noise"] = torch.rand(n, V, generator=torch.Generator().manual_seed(77)).clamp(min=1e-12)
    tokens = run_backend(backend, a, **kw).tokens
    return torch.bincount(tokens, minlength=V)


CASES = [  # temperature, top_k, top_p
    (1.0, 0, 1.0),
    (0.8, 6, 1.0),
    (1.5, 0, 0.7),
    (1.2, 10, 0.8),
]


@pytest.mark.parametrize("t,k,p", CASES)
@pytest.mark.parametrize("seeded", [False, True], ids=["noise", "seed"])
def test_torch_frequencies_match_truncated_softmax(t, k, p, seeded):
    row = torch.randn(37, generator=torch.Generator().manual_seed(11)) * 1.5
    counts = _draw_counts("torch", row, 20000, t, k, p, seeded)
    assert chi_square_pvalue(counts, _expected(row, t, k, p)) > 1e-3


@pytest.mark.parametrize("t,k,p", [(1.0, 5, 1.0), (1.3, 0, 0.75)])
def test_triton_frequencies_match_truncated_softmax(t, k, p):
    row = torch.randn(37, generator=torch.Generator().manual_seed(12)) * 1.5
    counts = _draw_counts("triton", row, 200, t, k, p, seeded=True)
    assert chi_square_pvalue(counts, _expected(row, t, k, p)) > 1e-3


def test_chi_square_detects_a_wrong_temperature():
    row = torch.randn(37, generator=torch.Generator().manual_seed(11)) * 1.5
    counts = _draw_counts("torch", row, 20000, 1.0, 6, 1.0, seeded=False)
    assert chi_square_pvalue(counts, _expected(row, 0.7, 6, 1.0)) < 1e-6
