"""`sample_step`: one dispatcher over the torch, Triton and CUDA backends.

``backend="auto"`` picks, for tensors on a CUDA device, the compiled CUDA extension when it is
built, else the Triton kernel; anywhere else (CPU) the torch reference, which is also the CPU
production path. Asking for a backend that cannot run raises `BackendUnavailableError` with the
reason. When ``"auto"`` passes over CUDA or Triton on a CUDA device, the logger ``regexlm.ops``
says so once per reason, with the reason. Arguments are checked once here (shapes, dtypes,
devices), so the backends can trust them.
"""

from __future__ import annotations

import logging

import torch

from regexlm.errors import RegexlmError
from regexlm.ops.noise import as_int32, fresh_seed, seed_rows
from regexlm.ops.reference import sample_step_reference, step_in_parts
from regexlm.ops.types import StepResult, TableGroups

BACKENDS = ("auto", "torch", "triton", "cuda")

logger = logging.getLogger("regexlm.ops")
_fallbacks_logged: set[tuple[str, str, str]] = set()


def _log_fallback(skipped: str, reason: str, chosen: str) -> None:
    """Warn, once per (skipped, reason, chosen), that "auto" did not take the faster backend."""
    key = (skipped, reason, chosen)
    if key in _fallbacks_logged:
        return
    _fallbacks_logged.add(key)
    logger.warning(
        "backend 'auto' uses %s instead of %s on this CUDA device: %s", chosen, skipped, reason
    )


class BackendUnavailableError(RegexlmError, RuntimeError):
    """The requested ops backend cannot run here (no GPU, no Triton, extension not built)."""


def _triton_reason(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"the Triton backend needs tensors on a CUDA device, got {device.type}"
    try:
        import triton  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the install
        return f"Triton is not importable: {exc}"
    return None


def _cuda_reason(device: torch.device, explicit: bool = False) -> str | None:
    if device.type != "cuda":
        return f"the CUDA backend needs tensors on a CUDA device, got {device.type}"
    from regexlm.ops import sample_cuda

    return sample_cuda.unavailable_reason(build=explicit)


def available_backends(device: torch.device | str = "cuda") -> list[str]:
    """The concrete backends that can run for tensors on `device`, fastest first."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return ["torch"]
    out = []
    if _cuda_reason(device) is None:
        out.append("cuda")
    if _triton_reason(device) is None:
        out.append("triton")
    out.append("torch")
    return out


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend a call runs on; raises `BackendUnavailableError` for one that cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return backend
    if backend == "auto":
        if device.type != "cuda":
            return "torch"
        cuda_reason = _cuda_reason(device)
        if cuda_reason is None:
            return "cuda"
        triton_reason = _triton_reason(device)
        chosen = "triton" if triton_reason is None else "torch"
        _log_fallback("cuda", cuda_reason, chosen)
        if triton_reason is not None:
            _log_fallback("triton", triton_reason, chosen)
        return chosen
    reason = _triton_reason(device) if backend == "triton" else _cuda_reason(device, True)
    if reason is not None:
        raise BackendUnavailableError(f"backend {backend!r} is unavailable: {reason}")
    return backend


def _check(logits, states, budgets, temperature, top_k, top_p, penalty, seen, tables, noise):
    if logits.dim() != 2:
        raise ValueError(f"logits must be [B, V], got shape {tuple(logits.shape)}")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"logits must be fp32, bf16 or fp16, got {logits.dtype}")
    B, V = logits.shape
    if isinstance(tables, TableGroups):
        _check_groups(tables, B)
        for group in tables.tables:
            _check_tables(group, logits)
    else:
        _check_tables(tables, logits)
    _check_rows(logits, states, budgets, temperature, top_k, top_p, penalty, seen, noise)


def _check_groups(groups: TableGroups, B: int) -> None:
    """Every row of the batch in exactly one group, and no empty group."""
    if not groups.tables:
        raise ValueError("TableGroups needs at least one group")
    seen = [False] * B
    for positions in groups.positions:
        if not positions:
            raise ValueError("a group of TableGroups has no rows")
        for b in positions:
            if not (isinstance(b, int) and 0 <= b < B) or seen[b]:
                raise ValueError(
                    f"TableGroups positions must name each row of the batch (0..{B - 1}) "
                    f"exactly once; got {b!r} again or out of range"
                )
            seen[b] = True
    if not all(seen):
        raise ValueError(f"TableGroups leaves row {seen.index(False)} of {B} in no group")


def _check_tables(tables, logits) -> None:
    V = logits.shape[1]
    for name in ("next_by_class", "class_of", "min_tokens"):
        t = getattr(tables, name, None)
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"the index tables need a tensor attribute {name!r} (a TokenIndex or an "
                f"ops.IndexTables), got {type(tables).__name__}"
            )
        if t.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"{name} must be an int32 tensor, got {t.dtype}")
        if t.device != logits.device:
            raise ValueError(f"{name} is on {t.device}, logits on {logits.device}")
    nbc = tables.next_by_class
    if nbc.dim() != 2:
        raise ValueError(f"next_by_class must be [R, C], got shape {tuple(nbc.shape)}")
    if tables.class_of.shape != (V,):
        raise ValueError(
            f"logits have {V} columns but the index covers {tables.class_of.shape[0]} tokens"
        )
    rows = getattr(tables, "row_of", None)
    if rows is None:  # state s reads row s
        if tables.min_tokens.shape != (nbc.shape[0],):
            raise ValueError(
                f"min_tokens must have one entry per state ({nbc.shape[0]}), "
                f"got shape {tuple(tables.min_tokens.shape)}"
            )
    else:
        if not isinstance(rows, torch.Tensor) or rows.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"row_of must be an int32 tensor, got {type(rows).__name__}")
        if rows.device != logits.device:
            raise ValueError(f"row_of is on {rows.device}, logits on {logits.device}")
        if tables.min_tokens.dim() != 1 or rows.shape != tables.min_tokens.shape:
            raise ValueError(
                f"row_of and min_tokens must have one entry per state, got shapes "
                f"{tuple(rows.shape)} and {tuple(tables.min_tokens.shape)}"
            )


def _check_rows(logits, states, budgets, temperature, top_k, top_p, penalty, seen, noise):
    B, V = logits.shape
    for name, t in (
        ("states", states),
        ("budgets", budgets),
        ("temperature", temperature),
        ("top_k", top_k),
        ("top_p", top_p),
        ("repetition_penalty", penalty),
    ):
        if t.shape != (B,):
            raise ValueError(f"{name} must have shape [{B}], got {tuple(t.shape)}")
        if t.device != logits.device:
            raise ValueError(f"{name} is on {t.device}, logits on {logits.device}")
    if seen is not None and (seen.shape != (B, V) or seen.dtype != torch.bool):
        raise ValueError(f"seen must be bool[{B}, {V}], got {seen.dtype}{list(seen.shape)}")
    if noise is not None and noise.shape != (B, V):
        raise ValueError(f"noise must be [{B}, {V}], got {tuple(noise.shape)}")


def _row_counters(seeds, steps, seed, step, B, device):
    """Per-row seeds int64[B] and steps int32[B] from the tensor or the scalar forms."""
    if seeds is not None and seed is not None:
        raise TypeError("pass the seeds once: `seeds` (one per row) or `seed` (a scalar)")
    if seeds is None:
        seeds = seed_rows(fresh_seed() if seed is None else int(seed), B, device)
    if steps is None:
        steps = torch.full((B,), as_int32(int(step)), dtype=torch.int32, device=device)
    for name, t in (("seeds", seeds), ("steps", steps)):
        if not isinstance(t, torch.Tensor) or t.shape != (B,):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a tensor of shape [{B}], got {shape}")
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex:
            raise ValueError(f"{name} must hold integers, got {t.dtype}")
        if t.device != device:
            raise ValueError(f"{name} is on {t.device}, logits on {device}")
    return seeds.to(torch.int64), steps.to(torch.int32)


def sample_step(
    logits: torch.Tensor,
    states: torch.Tensor,
    budgets: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    repetition_penalty: torch.Tensor,
    seen: torch.Tensor | None,
    tables=None,
    *,
    index=None,
    noise: torch.Tensor | None = None,
    seeds: torch.Tensor | None = None,
    steps: torch.Tensor | None = None,
    seed: int | None = None,
    step: int = 0,
    backend: str = "auto",
) -> StepResult:
    """One decode step for a batch: mask, penalty, temperature, top-k, top-p, draw, advance.

    logits [B, V] fp32/bf16/fp16; states, budgets, top_k int32[B]; temperature, top_p,
    repetition_penalty fp32[B]; seen bool[B, V] or None (no penalty); tables: next_by_class,
    class_of, min_tokens and optionally row_of (a `TokenIndex` or `IndexTables`). A budget < 0
    means no budget.

    Randomness (see `regexlm.ops.noise`): each row draws from its own counter-based stream keyed
    by ``seeds[b]`` (int64[B]) and ``steps[b]`` (int32[B], zeros when omitted), computed inside the
    step, so a row's tokens do not depend on the rest of its batch. ``seed=s`` is a shorthand that
    gives row b the seed ``s + b``; with neither, a fresh seed is drawn. ``noise`` fp32[B, V]
    (uniform in (0, 1)) replaces the generator, for tests. The tables may also be passed by
    keyword as ``index=`` (the name the architecture page uses).
    """
    if tables is None:
        tables = index
    elif index is not None:
        raise TypeError("pass the index tables once, as `tables` or as `index`")
    if tables is None:
        raise TypeError("sample_step needs the index tables (`tables=` or `index=`)")
    _check(
        logits, states, budgets, temperature, top_k, top_p, repetition_penalty, seen, tables, noise
    )
    name = resolve_backend(backend, logits.device)
    if noise is None:
        seeds, steps = _row_counters(seeds, steps, seed, step, logits.shape[0], logits.device)
    else:
        seeds = steps = None
    args = (logits, states, budgets, temperature, top_k, top_p, repetition_penalty, seen, tables)
    if name == "torch":
        return sample_step_reference(*args, noise=noise, seeds=seeds, steps=steps)
    if name == "triton":
        from regexlm.ops.sample_triton import sample_step_triton as fused
    else:
        from regexlm.ops.sample_cuda import sample_step_cuda as fused
    if isinstance(tables, TableGroups):
        return step_per_group(fused, *args, noise=noise, seeds=seeds, steps=steps)
    return fused(*args, noise=noise, seeds=seeds, steps=steps)


def step_per_group(
    step,
    logits: torch.Tensor,
    states: torch.Tensor,
    budgets: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    repetition_penalty: torch.Tensor,
    seen: torch.Tensor | None,
    tables: TableGroups,
    *,
    noise: torch.Tensor | None = None,
    seeds: torch.Tensor | None = None,
    steps: torch.Tensor | None = None,
) -> StepResult:
    """A step over :class:`TableGroups` by one call of ``step`` (a backend's step over one set
    of tables, with `sample_step_reference`'s arguments) per group: each group's rows are
    gathered, stepped with the group's tables and scattered back
    (:func:`~regexlm.ops.reference.step_in_parts`). A group of the whole batch is stepped as
    it is."""
    inputs = dict(
        logits=logits,
        states=states,
        budgets=budgets,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        seen=seen,
        noise=noise,
        seeds=seeds,
        steps=steps,
    )
    if len(tables.tables) == 1:
        return step(**inputs, tables=tables.tables[0])
    return step_in_parts(step, inputs, tables.positions, tables.tables)


def update_seen(seen: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mark ``tokens`` int64[B] in ``seen`` bool[B, V], in place (no host sync); -1 is skipped."""
    B, V = seen.shape
    rows = torch.arange(B, device=seen.device)
    cols = tokens.clamp(min=0)  # rows with -1 rewrite column 0 with its own value
    seen[rows, cols] = seen[rows, cols] | (tokens >= 0)
    return seen
