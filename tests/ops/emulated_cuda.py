"""Run the CUDA kernel file of ``csrc/`` on the CPU through the host emulation in ``cuda_emu/``.

The ``.cu`` file is compiled by g++ as C++ against emulated CUDA headers (threads of a block are
std::threads) into a shared library, and its C launcher is called through ctypes with the data
pointers of CPU tensors. Slow, but it runs the kernel's own code: reductions, searches, ties.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from regexlm.ops.types import StepResult, state_rows

HERE = Path(__file__).resolve().parent
KERNEL = HERE.parents[1] / "csrc" / "sample_step_kernel.cu"
THREADS = 64  # two warps: cross-warp reductions are exercised, OS threads stay few
_lib = None


def available() -> bool:
    return shutil.which("g++") is not None


def _build() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        src = (
            str(THREADS).encode()
            + KERNEL.read_bytes()
            + b"".join(p.read_bytes() for p in sorted(KERNEL.parent.glob("*.h")))
            + b"".join(p.read_bytes() for p in sorted((HERE / "cuda_emu").glob("*.h")))
        )
        tag = hashlib.sha1(src).hexdigest()[:12]
        out = Path(tempfile.gettempdir()) / f"regexlm_cuda_emu_{tag}.so"
        if not out.exists():
            tmp = out.with_suffix(f".{tag}.tmp.so")
            subprocess.run(
                [
                    "g++",
                    "-x",
                    "c++",
                    "-std=c++20",
                    "-O1",
                    "-fPIC",
                    "-shared",
                    f"-DREGEXLM_THREADS={THREADS}",
                    f"-I{HERE / 'cuda_emu'}",
                    str(KERNEL),
                    "-o",
                    str(tmp),
                    "-lpthread",
                ],
                check=True,
                capture_output=True,
            )
            tmp.replace(out)
        _lib = ctypes.CDLL(str(out))
        _lib.regexlm_sample_step_launch.restype = ctypes.c_int
    return _lib


def _ceil(a: int, b: int) -> int:
    return (a + b - 1) // b


def _p(t):
    return ctypes.c_void_p(t.data_ptr()) if t is not None else ctypes.c_void_p(0)


def sample_step_emulated(
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
    split=1,
) -> StepResult:
    """The csrc launcher on CPU tensors; ``split`` > 1 runs the split-row path (chunks of the row
    for the first pass, the last block to arrive combining)."""
    lib = _build()
    B, V = logits.shape
    dtype = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}[logits.dtype]
    logits = logits.contiguous()
    nbc = tables.next_by_class.to(torch.int32).contiguous()
    R, C = nbc.shape
    S = tables.min_tokens.shape[0]
    if noise is None:
        seeds = torch.zeros(B, dtype=torch.int64) if seeds is None else seeds
        steps = torch.zeros(B, dtype=torch.int32) if steps is None else steps
    keep = dict(
        states=states.to(torch.int32).contiguous(),
        budgets=budgets.to(torch.int32).contiguous(),
        temperature=temperature.float().contiguous(),
        top_k=top_k.to(torch.int32).contiguous(),
        top_p=top_p.float().contiguous(),
        penalty=repetition_penalty.float().contiguous(),
        seen=None if seen is None else seen.contiguous(),
        nbc=nbc,
        row_of=state_rows(tables).to(torch.int32).contiguous(),
        class_of=tables.class_of.to(torch.int32).contiguous(),
        min_tokens=tables.min_tokens.to(torch.int32).contiguous(),
        noise=None if noise is None else noise.float().contiguous(),
        seeds=None if noise is not None else seeds.to(torch.int64).contiguous(),
        steps=None if noise is not None else steps.to(torch.int32).contiguous(),
    )
    # as the torch glue in csrc/ computes them
    chunk = max(32, _ceil(_ceil(V, split), 32) * 32)
    nsplit = max(1, _ceil(V, chunk))
    part_f = torch.empty(B * nsplit * 4, dtype=torch.float32)
    part_i = torch.empty(B * nsplit * 4, dtype=torch.int32)
    counters = torch.zeros(B, dtype=torch.int32)
    tokens = torch.empty(B, dtype=torch.int64)
    next_states = torch.empty(B, dtype=torch.int32)
    no_allowed = torch.empty(B, dtype=torch.bool)
    i64, i32 = ctypes.c_int64, ctypes.c_int32
    err = lib.regexlm_sample_step_launch(
        _p(logits),
        ctypes.c_int(dtype),
        i64(logits.stride(0)),
        i32(B),
        i32(V),
        _p(keep["states"]),
        _p(keep["budgets"]),
        _p(keep["temperature"]),
        _p(keep["top_k"]),
        _p(keep["top_p"]),
        _p(keep["penalty"]),
        _p(keep["seen"]),
        i64(V if seen is None else keep["seen"].stride(0)),
        _p(keep["nbc"]),
        i64(nbc.stride(0)),
        _p(keep["row_of"]),
        i32(R),
        i32(S),
        i32(C),
        _p(keep["class_of"]),
        _p(keep["min_tokens"]),
        _p(keep["noise"]),
        i64(V if noise is None else keep["noise"].stride(0)),
        _p(keep["seeds"]),
        _p(keep["steps"]),
        _p(tokens),
        _p(next_states),
        _p(no_allowed),
        _p(part_f),
        _p(part_i),
        _p(counters),
        i32(nsplit),
        i32(chunk),
        ctypes.c_void_p(0),
    )
    assert err == 0, err
    assert int(counters.abs().sum()) == 0, "split-row counters not reset"
    return StepResult(tokens, next_states, no_allowed)
