"""Per-step kernels: one decode step for a batch, from raw logits to the next token and state.

A step masks the tokens the pattern (and the remaining token budget) forbids, applies the
repetition penalty and the temperature, truncates with top-k and top-p, draws a token with the
Gumbel-max trick and advances each row's automaton state. The exact operation is written as a
plain loop in `regexlm.ops.reference`, which is also the torch (CPU) backend. The Triton kernel
(`sample_triton`) and the CUDA extension (`sample_cuda`, sources in ``csrc/``) do the whole step
in one launch, without a host sync. `sample_step` picks a backend. Every backend computes the same
counter-based noise from per-row seeds and steps (`regexlm.ops.noise`), or reads pre-drawn noise,
so they can be compared token for token.
"""

from regexlm.ops.dispatch import (
    BACKENDS,
    BackendUnavailableError,
    available_backends,
    resolve_backend,
    sample_step,
    update_seen,
)
from regexlm.ops.noise import uniform_noise
from regexlm.ops.reference import sample_step_reference
from regexlm.ops.types import IndexTables, StepResult, TableGroups

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "IndexTables",
    "StepResult",
    "TableGroups",
    "available_backends",
    "resolve_backend",
    "sample_step",
    "sample_step_reference",
    "uniform_noise",
    "update_seen",
]
