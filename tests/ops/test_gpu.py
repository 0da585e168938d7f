"""On a CUDA device: Triton and CUDA against the reference at real vocabulary sizes, with given
noise and with the in-step generator (per-row seeds and steps), at the extremes of every input,
and the split-row protocol with many rows racing on their arrival counters.

Run with ``pytest -m gpu tests/ops`` (``bench/gpu_check.sh`` does). Skipped without a GPU.
"""

from __future__ import annotations

import pytest
import torch

from regexlm.ops import sample_step
from regexlm.ops.reference import sample_step_reference
from regexlm.ops.testing import random_tables
from tests.ops.oracle import chi_square_pvalue, run_backend

try:  # a GPU machine may lack hypothesis: then only the property test is left out
    from hypothesis import HealthCheck, given, settings

    from tests.ops.test_extremes import steps as extreme_steps
except ImportError:  # pragma: no cover - depends on the install
    given = None

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

VOCABS = [49152, 128256, 262144]
GPU_BACKENDS = ["triton", "cuda"]


def _batch(B, V, dtype, seed):
    dev = "cuda"
    tables = random_tables(16, V, 64, allow_prob=0.5, seed=seed, device=dev)
    g = torch.Generator(device=dev).manual_seed(seed)
    presets = [  # temperature, top_k, top_p, penalty, budget
        (1.0, 0, 1.0, 1.0, -1),
        (0.7, 50, 1.0, 1.3, -1),
        (1.0, 0, 0.9, 1.0, 3),
        (0.8, 40, 0.95, 1.2, 2),
        (0.0, 0, 1.0, 1.1, -1),
        (1.2, 1000, 0.5, 1.0, -1),
        (1.0, 5, 1.0, 1.0, 1),
        (0.9, 0, 0.3, 1.0, -1),
    ]
    rows = [presets[(i + seed) % len(presets)] for i in range(B)]
    f32 = dict(device=dev, dtype=torch.float32)
    i32 = dict(device=dev, dtype=torch.int32)
    return dict(
        logits=(torch.randn(B, V, generator=g, device=dev) * 3).to(dtype),
        states=torch.randint(1, 16, (B,), generator=g, **i32),
        budgets=torch.tensor([r[4] for r in rows], **i32),
        temperature=torch.tensor([r[0] for r in rows], **f32),
        top_k=torch.tensor([r[1] for r in rows], **i32),
        top_p=torch.tensor([r[2] for r in rows], **f32),
        repetition_penalty=torch.tensor([r[3] for r in rows], **f32),
        seen=torch.rand(B, V, generator=g, device=dev) < 0.02,
        tables=tables,
        noise=torch.rand(B, V, generator=g, device=dev).clamp(min=1e-12),
        seeds=torch.randint(-(2**62), 2**62, (B,), generator=g, device=dev),
        steps=torch.randint(0, 10**6, (B,), generator=g, device=dev).to(torch.int32),
    )


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("V", VOCABS)
@pytest.mark.parametrize("B", [1, 8, 64])
def test_gpu_backend_equals_reference(backend, dtype, V, B):
    a = _batch(B, V, dtype, seed=B + V % 97)
    want = sample_step_reference(**a)
    got = sample_step(**a, backend=backend)
    assert torch.equal(got.next_states, want.next_states)
    assert torch.equal(got.no_allowed, want.no_allowed)
    assert torch.equal(got.tokens, want.tokens)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("V", [49152, 262144])
@pytest.mark.parametrize("B", [1, 64])
def test_gpu_backend_equals_reference_with_the_in_step_generator(backend, dtype, V, B):
    """No noise tensor: every backend computes the numbers from the rows' seeds and steps."""
    a = _batch(B, V, dtype, seed=3 * B + V % 89)
    a.pop("noise")
    want = sample_step_reference(**a)
    got = sample_step(**a, backend=backend)
    assert torch.equal(got.next_states, want.next_states)
    assert torch.equal(got.tokens, want.tokens)
    # the same rows in reverse order: each row's token does not depend on its position
    flip = {k: (v.flip(0) if torch.is_tensor(v) and v.dim() >= 1 else v) for k, v in a.items()}
    assert torch.equal(sample_step(**flip, backend=backend).tokens.flip(0), got.tokens)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gpu_split_rows_with_many_rows_at_once(backend):
    """Many rows, each split over many programs that race on the row's arrival counter, launch
    after launch on one stream: every row equals the reference and the counters end at zero."""
    from regexlm.ops import grid

    B, V = 512, 131072
    a = _batch(B, V, torch.bfloat16, seed=7)
    a.pop("noise")
    want = sample_step_reference(**a)
    for launch in range(12):
        got = run_backend(backend, a, split=16 if launch % 2 else 5)
        assert torch.equal(got.tokens, want.tokens.cpu()), launch
        assert torch.equal(got.next_states, want.next_states.cpu()), launch
    torch.cuda.synchronize()
    for buf in grid._COUNTERS.values():
        assert int(buf.abs().sum()) == 0


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("V", [49152, 262144])
@pytest.mark.parametrize("k,p", [(20, 1.0), (0, 0.6), (30, 0.8)])
def test_gpu_seeded_frequencies_match_truncated_softmax(backend, V, k, p):
    n = 4096
    g = torch.Generator().manual_seed(V + k)
    row = torch.randn(V, generator=g) * 2
    row[:40] += 6.0  # a head of likely tokens, as in real logits
    from regexlm.ops.types import IndexTables

    tables = IndexTables(  # state 1 allows every token (one class, looping); state 0 nothing
        torch.tensor([[-1], [1]], dtype=torch.int32).cuda(),
        torch.zeros(V, dtype=torch.int32).cuda(),
        torch.tensor([9, 0], dtype=torch.int32).cuda(),
    )
    ones = torch.ones(n, device="cuda")
    a = dict(
        logits=row.cuda().repeat(n, 1),
        states=torch.ones(n, dtype=torch.int32, device="cuda"),
        budgets=torch.full((n,), -1, dtype=torch.int32, device="cuda"),
        temperature=ones,
        top_k=torch.full((n,), k, dtype=torch.int32, device="cuda"),
        top_p=ones * p,
        repetition_penalty=ones,
        seen=None,
        tables=tables,
    )
    tokens = sample_step(**a, seed=99, step=3, backend=backend).tokens.cpu()
    # expected: the reference's kept set and softmax over it
    from regexlm.ops.reference import truncation_mask

    z = row.unsqueeze(0)
    kept = truncation_mask(
        z, torch.ones_like(z, dtype=torch.bool), torch.tensor([k]), torch.tensor([p])
    )[0]
    probs = torch.softmax(torch.where(kept, row, -torch.inf), 0)
    counts = torch.bincount(tokens, minlength=V)
    assert chi_square_pvalue(counts[kept], probs[kept]) > 1e-3
    assert int(counts[~kept].sum()) == 0


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gpu_seed_mode_is_reproducible(backend):
    a = _batch(8, 49152, torch.float32, seed=1)
    a.pop("noise"), a.pop("seeds"), a.pop("steps")
    x = sample_step(**a, seed=5, step=1, backend=backend).tokens
    torch.cuda.synchronize()
    assert torch.equal(x, sample_step(**a, seed=5, step=1, backend=backend).tokens)


def test_auto_prefers_a_compiled_backend_on_cuda():
    from regexlm.ops import resolve_backend

    assert resolve_backend("auto", torch.device("cuda")) in ("cuda", "triton")


if given is not None:

    @pytest.mark.parametrize("split", [1, 3], ids=["row", "split"])
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(a=extreme_steps())
    def test_gpu_backends_agree_with_the_reference_at_the_extremes(a, split):
        """The CPU property test's inputs (tests/ops/test_extremes.py), compiled kernels on the
        GPU against the torch reference on the CPU. Last in the file: its many small kernel
        variants take a while to compile."""
        want = run_backend("torch", a)
        for backend in GPU_BACKENDS:
            kw = {"block": 16, "split": split} if backend == "triton" else {"split": split}
            got = run_backend(backend, a, **kw)
            assert got.tokens.tolist() == want.tokens.tolist(), backend
            assert got.next_states.tolist() == want.next_states.tolist(), backend
            assert got.no_allowed.tolist() == want.no_allowed.tolist(), backend
