"""The CUDA kernel of ``csrc/`` equals the torch reference, run on the CPU through the host
emulation in ``cuda_emu/`` (g++ compiles the same ``.cu`` file; block threads are std::threads).

This checks the kernel's own logic here, without a GPU; the GPU run is in test_gpu.py.
"""

from __future__ import annotations

import pytest
import torch

from regexlm.ops.reference import sample_step_reference
from tests.ops import emulated_cuda
from tests.ops.oracle import chi_square_pvalue, mixed_case, run_backend, simple_inputs

pytestmark = pytest.mark.skipif(not emulated_cuda.available(), reason="needs g++")

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("V", [37, 1000, 4099])
@pytest.mark.parametrize("B", [1, 3])
def test_emulated_cuda_equals_reference(B, V, dtype):
    for seed in range(2 if V < 4099 else 1):
        a = mixed_case(B, V, seed=31 * seed + V + B, dtype=dtype)
        want = sample_step_reference(**a)
        got = run_backend("cuda-emu", a, split=1 + seed * 3)  # one block per row, or 4 chunks
        assert torch.equal(got.tokens, want.tokens), seed
        assert torch.equal(got.next_states, want.next_states), seed
        assert torch.equal(got.no_allowed, want.no_allowed), seed


def test_emulated_cuda_seed_mode_reproducible_and_distributed_as_softmax():
    V, n = 37, 48
    row = torch.tensor([2.0, 1.5, 1.0] + [-3.0] * (V - 3))
    a = simple_inputs(row.repeat(n, 1), top_k=3)
    a.pop("noise")
    first = run_backend("cuda-emu", a, seed=3, step=1).tokens
    assert torch.equal(first, run_backend("cuda-emu", a, seed=3, step=1).tokens)
    assert set(first.tolist()) <= {0, 1, 2}
    counts = torch.bincount(first, minlength=V)
    probs = torch.zeros(V)
    probs[:3] = torch.softmax(row[:3], 0)
    assert chi_square_pvalue(counts, probs) > 1e-3
