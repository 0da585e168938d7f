"""The CUDA C++ step (sources in ``csrc/``), as the torch operator ``regexlm::sample_step``.

The operator comes from the compiled extension ``regexlm._C`` when ``setup.py`` built it (it does
where a CUDA toolkit and a CUDA build of torch are present). Otherwise, asking for
``backend="cuda"`` compiles ``csrc/`` once with ``torch.utils.cpp_extension.load`` (about a minute;
cached by torch under ``TORCH_EXTENSIONS_DIR``). ``backend="auto"`` only uses an extension that is
already built, or JIT-builds when ``REGEXLM_CUDA_JIT=1``, so a first call never stalls by surprise.

The kernels (``*.cu``) include no torch header and export a C launcher; the glue (``*.cpp``) needs
only ``<torch/extension.h>`` and takes the CUDA stream as an integer from Python. As in the Triton
kernel, a small batch has each row's first pass split over several blocks (see `regexlm.ops.grid`).
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
from pathlib import Path

import torch

from regexlm.ops.grid import arrival_counters, sm_count
from regexlm.ops.types import StepResult, state_rows


def find_csrc() -> Path:
    """The CUDA sources: ``regexlm/csrc/`` of an installed package, else a checkout's ``csrc/``.

    A wheel or sdist install carries the sources as package data (setup.py copies them in); an
    editable install or a plain checkout has them only at the repository root.
    """
    packaged = importlib.resources.files("regexlm") / "csrc"
    if isinstance(packaged, Path) and any(packaged.glob("*.cu")):
        return packaged
    return Path(__file__).resolve().parents[2] / "csrc"


CSRC = find_csrc()

_state: dict[str, object] = {}


def _registered() -> bool:
    return hasattr(torch.ops, "regexlm") and hasattr(torch.ops.regexlm, "sample_step")


def _import_built() -> bool:
    if _registered():
        return True
    try:
        import regexlm._C  # noqa: F401  (registers torch.ops.regexlm.sample_step)
    except ImportError:
        return False
    return _registered()


def jit_sources() -> list[str]:
    """The translation units of the extension: glue (.cpp) and kernels (.cu)."""
    return sorted(str(p) for p in [*CSRC.glob("*.cpp"), *CSRC.glob("*.cu")])


def _jit_build() -> None:
    from torch.utils.cpp_extension import load

    load(
        name="regexlm_C",
        sources=jit_sources(),
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3"],
        verbose=os.environ.get("REGEXLM_CUDA_JIT_VERBOSE") == "1",
    )


def _jit_reason() -> str | None:
    if torch.version.cuda is None:
        return "torch is a CPU-only build"
    if not jit_sources():
        return f"no CUDA sources under {CSRC}; reinstall regexlm from its wheel or sdist"
    if shutil.which("nvcc") is None and not os.environ.get("CUDA_HOME"):
        return "the CUDA toolkit (nvcc) is not installed, and regexlm._C is not built"
    return None


def unavailable_reason(build: bool = False) -> str | None:
    """None when the operator can run; otherwise why not. ``build`` allows a JIT build."""
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    if _import_built():
        return None
    reason = _jit_reason()
    if reason is not None:
        return reason
    if not (build or os.environ.get("REGEXLM_CUDA_JIT") == "1"):
        return "regexlm._C is not built (build it with setup.py, or set REGEXLM_CUDA_JIT=1)"
    if "jit_error" in _state:
        return str(_state["jit_error"])
    try:
        _jit_build()
    except Exception as exc:  # pragma: no cover - needs a CUDA toolkit
        _state["jit_error"] = f"building csrc/ failed: {exc}"
        return str(_state["jit_error"])
    return None if _registered() else "the built extension did not register regexlm::sample_step"


def sample_step_cuda(
    logits,
    states,
    budgets,
    temperature,
    top_k,
    top_p,
    repetition_penalty,
    seen,
    tables,
    *,
    noise=None,
    seeds=None,
    steps=None,
    split=None,
) -> StepResult:
    """Run the CUDA operator on the current stream of the logits' device. Arguments as
    `sample_step` (``seeds`` int64[B] and ``steps`` int32[B], zeros when omitted, unless
    ``noise`` is given)."""
    reason = unavailable_reason(build=True)
    if reason is not None:
        from regexlm.ops.dispatch import BackendUnavailableError

        raise BackendUnavailableError(f"backend 'cuda' is unavailable: {reason}")
    B = logits.shape[0]
    dev = logits.device
    if noise is None:
        seeds = torch.zeros(B, dtype=torch.int64, device=dev) if seeds is None else seeds
        steps = torch.zeros(B, dtype=torch.int32, device=dev) if steps is None else steps
        seeds, steps = seeds.to(torch.int64).contiguous(), steps.to(torch.int32).contiguous()
    else:
        seeds = steps = None
    if split is None:  # small batches: split the first pass so the GPU fills up
        split = max(1, (2 * sm_count(dev)) // max(B, 1))
    counters = arrival_counters(dev, B) if split > 1 else None
    with torch.cuda.device(dev):
        stream = torch.cuda.current_stream(dev).cuda_stream
        tokens, next_states, no_allowed = torch.ops.regexlm.sample_step(
            logits.contiguous(),
            states.to(torch.int32).contiguous(),
            budgets.to(torch.int32).contiguous(),
            temperature.to(torch.float32).contiguous(),
            top_k.to(torch.int32).contiguous(),
            top_p.to(torch.float32).contiguous(),
            repetition_penalty.to(torch.float32).contiguous(),
            None if seen is None else seen.contiguous(),
            tables.next_by_class.to(torch.int32).contiguous(),
            state_rows(tables).to(torch.int32).contiguous(),
            tables.class_of.to(torch.int32).contiguous(),
            tables.min_tokens.to(torch.int32).contiguous(),
            None if noise is None else noise.to(torch.float32).contiguous(),
            seeds,
            steps,
            stream,
            counters,
            split,
        )
    return StepResult(tokens, next_states, no_allowed)
