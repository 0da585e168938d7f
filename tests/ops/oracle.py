"""The step as the reference docstring states it: a plain per-row loop over tokens (numpy fp32).

Independent of `regexlm.ops.reference` (no shared code), so comparing the two checks the
vectorised reference against its own specification. Small vocabularies only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regexlm.ops.testing import random_tables, step_inputs

FLT_MAX = np.float32(3.4028234663852886e38)


def loop_step(
    logits,
    states,
    budgets,
    temperature,
    top_k,
    top_p,
    repetition_penalty,
    seen,
    tables,
    noise=None,
    seeds=None,
    steps=None,
):
    """Returns (tokens, next_states, no_allowed) as Python lists.

    ``u`` is ``noise`` (clamped as the backends read it) or, without it, the generator of
    `regexlm.ops.noise` evaluated token by token in Python integers.
    """
    from regexlm.ops.noise import uniform

    x_all = logits.float().numpy()
    nbc = tables.next_by_class.numpy()
    class_of = tables.class_of.numpy()
    min_tokens = tables.min_tokens.numpy()
    rows = getattr(tables, "row_of", None)
    row_of = list(range(len(min_tokens))) if rows is None else rows.tolist()
    S, (num_rows, C) = len(min_tokens), nbc.shape
    B, V = x_all.shape
    out_t, out_s, out_e = [], [], []
    for b in range(B):
        s, R = int(states[b]), int(budgets[b])
        row = row_of[s] if 0 <= s < S else -1

        def nxt(t, row=row):
            c = int(class_of[t])
            return int(nbc[row, c]) if 0 <= c < C else -1

        allowed = [t for t in range(V) if 0 <= row < num_rows and 0 <= nxt(t) < S]
        if allowed and R >= 0 and int(min_tokens[s]) <= R:
            allowed = [t for t in allowed if int(min_tokens[nxt(t)]) <= R - 1]
        if not allowed:
            out_t.append(-1), out_s.append(s), out_e.append(True)
            continue
        p = np.float32(repetition_penalty[b])
        x = {}
        with np.errstate(all="ignore"):
            for t in allowed:
                v = np.float32(x_all[b, t])
                if seen is not None and bool(seen[b, t]):
                    v = np.float32(v * p) if v < 0 else np.float32(v / p)
                x[t] = np.float32(-np.inf) if np.isnan(v) else v
            best = max(x.values())
            greedy = min(t for t in allowed if x[t] == best)
            temp = np.float32(temperature[b])
            z = {t: np.float32(v / min(temp, FLT_MAX)) for t, v in x.items()} if temp > 0 else {}
        if not temp > 0 or not np.isfinite(max(z.values())):
            token = greedy
        else:
            kept = list(allowed)
            k = int(top_k[b])
            if 0 < k:
                kth = sorted((z[t] for t in kept), reverse=True)[min(k, len(kept)) - 1]
                kept = [t for t in kept if z[t] >= kth]
            pp = np.float32(top_p[b])
            if pp < 1:
                vals = np.array([z[t] for t in kept], dtype=np.float32)
                with np.errstate(under="ignore"):
                    q = np.exp(vals - vals.max())
                q = q / q.sum()
                order = np.argsort(vals, kind="stable")  # ascending
                cum = np.cumsum(q[order], dtype=np.float32)
                mass_le = {}
                for pos, i in enumerate(order):  # ties: the mass up to the last tied entry
                    mass_le[float(vals[i])] = cum[pos]
                keep = [t for t in kept if mass_le[float(z[t])] > np.float32(1 - pp)]
                top = max(z[t] for t in kept)
                kept = keep or [t for t in kept if z[t] == top]
            if noise is not None:
                u = np.nan_to_num(noise[b].float().numpy(), nan=0.5)
                u = np.clip(u, np.float32(1.1754943508222875e-38), np.float32(1 - 2**-24))
            else:
                seed = 0 if seeds is None else int(seeds[b])
                step = 0 if steps is None else int(steps[b])
                u = {t: np.float32(uniform(seed, step, t)) for t in kept}
            g = {t: np.float32(z[t] - np.log(-np.log(u[t]))) for t in kept}
            best = max(g.values())
            token = min(t for t in kept if g[t] == best)
        out_t.append(token)
        out_s.append(nxt(token))
        out_e.append(False)
    return out_t, out_s, out_e


def mixed_case(B: int, V: int, *, seed: int = 0, dtype=torch.float32, num_states: int = 8):
    """A batch whose rows use different parameters (greedy, top-k, top-p, both, budgets)."""
    tables = random_tables(num_states, V, 16, seed=seed)
    a = step_inputs(B, V, tables, dtype=dtype, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    presets = [  # temperature, top_k, top_p, penalty, budget
        (1.0, 0, 1.0, 1.0, -1),
        (0.7, 5, 1.0, 1.3, -1),
        (1.3, 0, 0.6, 0.8, 2),
        (0.9, 20, 0.8, 1.2, 1),
        (0.0, 0, 1.0, 1.5, 3),
        (1.0, 3, 0.3, 1.0, -1),
        (2.0, 1000000, 0.95, 1.1, 4),
    ]
    order = torch.randperm(len(presets), generator=g).tolist()
    rows = [presets[order[i % len(presets)]] for i in range(B)]
    a["temperature"] = torch.tensor([r[0] for r in rows], dtype=torch.float32)
    a["top_k"] = torch.tensor([r[1] for r in rows], dtype=torch.int32)
    a["top_p"] = torch.tensor([r[2] for r in rows], dtype=torch.float32)
    a["repetition_penalty"] = torch.tensor([r[3] for r in rows], dtype=torch.float32)
    a["budgets"] = torch.tensor([r[4] for r in rows], dtype=torch.int32)
    return a


def shared_rows(tables, *, seed: int = 0):
    """``tables`` (without ``row_of``) with their rows stored once each, in a shuffled order
    after a first row that allows nothing, and ``row_of`` naming them; states whose row allows
    nothing get the first row, or a row number out of range. The step must read both alike."""
    from regexlm.ops.types import IndexTables

    g = torch.Generator().manual_seed(seed)
    dense = tables.next_by_class  # [S, C]
    S, C = dense.shape
    distinct, row_of = torch.unique(dense, dim=0, return_inverse=True)  # [U, C], [S]
    order = torch.randperm(distinct.shape[0], generator=g)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    rows = torch.cat([torch.full((1, C), -1, dtype=torch.int32), distinct[order]])  # [1 + U, C]
    row_of = 1 + rank[row_of]  # [S]
    empty = (dense < 0).all(1)  # [S]
    outside = torch.randint(0, 3, (S,), generator=g)  # 0: the empty row; 1, 2: out of range
    bad = torch.where(outside == 1, torch.full_like(row_of, -1), torch.full_like(row_of, 10**6))
    row_of = torch.where(empty & (outside == 0), 0, torch.where(empty, bad, row_of))
    return IndexTables(rows, tables.class_of, tables.min_tokens, row_of.to(torch.int32))


def single_state_tables(allowed: torch.Tensor, min_tokens: int = 0):
    """Tables with one live state (1) whose allowed tokens are `allowed` bool[V]; each allowed
    token loops back to state 1; state 0 allows nothing."""
    from regexlm.ops.types import IndexTables

    V = allowed.shape[0]
    class_of = torch.arange(V, dtype=torch.int32)
    nbc = torch.full((2, V), -1, dtype=torch.int32)
    nbc[1, allowed] = 1
    return IndexTables(nbc, class_of, torch.tensor([9, min_tokens], dtype=torch.int32))


def simple_inputs(logits, tables=None, **params):
    """Inputs for rows of `logits` [B, V] all in state 1 of `tables` (everything allowed by default)."""
    B, V = logits.shape
    if tables is None:
        tables = single_state_tables(torch.ones(V, dtype=torch.bool))
    a = dict(
        logits=logits,
        states=torch.ones(B, dtype=torch.int32),
        budgets=torch.full((B,), -1, dtype=torch.int32),
        temperature=torch.ones(B),
        top_k=torch.zeros(B, dtype=torch.int32),
        top_p=torch.ones(B),
        repetition_penalty=torch.ones(B),
        seen=None,
        tables=tables,
        noise=torch.rand(B, V, generator=torch.Generator().manual_seed(0)).clamp(min=1e-12),
    )
    for key, value in params.items():
        if key in ("temperature", "top_p", "repetition_penalty") and not torch.is_tensor(value):
            value = torch.full((B,), float(value))
        elif key in ("top_k", "budgets", "states") and not torch.is_tensor(value):
            value = torch.full((B,), int(value), dtype=torch.int32)
        a[key] = value
    return a


def chi_square_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's chi-square goodness of fit, p-value from the regularised upper gamma."""
    n = counts.sum()
    support = probs > 0
    assert int(counts[~support].sum()) == 0, "drew a token outside the kept set"
    expected = probs[support].double() * n
    stat = ((counts[support].double() - expected) ** 2 / expected).sum()
    df = int(support.sum()) - 1
    if df == 0:
        return 1.0
    return float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64), stat / 2))


def _to(inputs: dict, device) -> dict:
    out = {}
    for key, value in inputs.items():
        if torch.is_tensor(value):
            value = value.to(device)
        elif key == "tables":
            value = value.to(device)
        out[key] = value
    return out


def run_backend(name: str, inputs: dict, *, seed=None, step=None, **kw):
    """Run one backend's step function directly; results on the CPU.

    ``seed``/``step`` are the scalar shorthand of `regexlm.ops.sample_step` (row b gets seed
    ``seed + b``); they replace ``noise`` and any ``seeds``/``steps`` in ``inputs``. Without a
    GPU, Triton runs in its interpreter on CPU tensors; with one, the Triton and CUDA backends
    get the inputs moved to the GPU.
    """
    from regexlm.ops.noise import as_int32, seed_rows
    from regexlm.ops.types import StepResult

    if seed is not None or step is not None:
        B = inputs["logits"].shape[0]
        inputs = {k: v for k, v in inputs.items() if k != "noise"}
        inputs["seeds"] = seed_rows(seed or 0, B, "cpu")
        inputs["steps"] = torch.full((B,), as_int32(step or 0), dtype=torch.int32)
    if inputs.get("noise") is not None:
        inputs = {k: v for k, v in inputs.items() if k not in ("seeds", "steps")}
    if name == "torch":
        from regexlm.ops.reference import sample_step_reference as fn
    elif name == "triton":
        from regexlm.ops.sample_triton import sample_step_triton as fn
    elif name == "cuda":
        from regexlm.ops.sample_cuda import sample_step_cuda as fn
    elif name == "cuda-emu":  # the csrc kernel on the CPU, through tests/ops/cuda_emu
        from tests.ops.emulated_cuda import sample_step_emulated as fn
    else:
        raise ValueError(name)
    if name in ("triton", "cuda") and torch.cuda.is_available():
        inputs = _to(inputs, "cuda")
    r = fn(**inputs, **kw)
    return StepResult(r.tokens.cpu(), r.next_states.cpu(), r.no_allowed.cpu())


def backend_params():
    """torch, triton (its interpreter without a GPU), cuda (GPU only) and cuda-emu (the csrc
    kernel run on the CPU by tests/ops/cuda_emu), as pytest params.

    With a GPU the compiled backends carry the ``gpu`` mark, so ``pytest -m gpu`` runs them.
    """
    gpu = torch.cuda.is_available()
    needs_gpu = [pytest.mark.gpu, pytest.mark.skipif(not gpu, reason="needs a CUDA device")]
    return [
        "torch",
        pytest.param("triton", marks=[pytest.mark.gpu]) if gpu else "triton",
        pytest.param("cuda", marks=needs_gpu),
        pytest.param("cuda-emu", marks=pytest.mark.skipif(not _has_gxx(), reason="needs g++")),
    ]


def _has_gxx() -> bool:
    import shutil

    return shutil.which("g++") is not None
