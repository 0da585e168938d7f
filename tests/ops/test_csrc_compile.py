"""``csrc/`` builds here without a GPU: nvcc compiles the kernels, g++ the torch glue, and the
linked library registers ``regexlm::sample_step`` and rejects bad inputs with clear messages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from torch.utils.cpp_extension import include_paths, library_paths

CSRC = Path(__file__).resolve().parents[2] / "csrc"
NVCC = shutil.which("nvcc")


def _cuda_lib() -> Path | None:
    import os

    roots = [os.environ.get("CUDA_HOME"), "/usr/local/cuda"]
    if NVCC:
        roots.insert(0, str(Path(NVCC).resolve().parents[1]))
    for root in filter(None, roots):
        if (Path(root) / "lib64" / "libcudart_static.a").exists():
            return Path(root) / "lib64"
    return None


CUDA_LIB = _cuda_lib()

pytestmark = pytest.mark.skipif(
    NVCC is None or CUDA_LIB is None, reason="needs the CUDA toolkit (nvcc, libcudart_static)"
)


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("csrc")
    kernels = sorted(CSRC.glob("*.cu"))
    glue = sorted(CSRC.glob("*.cpp"))
    assert kernels and glue
    objs = []
    for cu in kernels:
        obj = out / (cu.stem + "_cu.o")
        _run([NVCC, "-std=c++17", "-arch=sm_90", "-O2", "-Xcompiler", "-fPIC", "-c", cu, "-o", obj])
        objs.append(obj)
    incs = [f"-I{p}" for p in include_paths()] + [f"-I{sysconfig.get_paths()['include']}"]
    for cpp in glue:
        obj = out / (cpp.stem + "_cpp.o")
        _run(
            [
                "g++",
                "-std=c++20",
                "-fPIC",
                "-O0",
                *incs,
                "-DTORCH_EXTENSION_NAME=_C",
                "-c",
                cpp,
                "-o",
                obj,
            ]
        )
        objs.append(obj)
    return out, objs


def test_kernels_include_no_torch_header():
    for cu in CSRC.glob("*.cu"):
        text = cu.read_text()
        assert "torch/" not in text and "ATen/" not in text and "c10/" not in text, cu.name


def test_both_halves_compile_and_the_library_registers_the_operator(built):
    out, objs = built
    lib = out / "regexlm_C.so"
    tlib = library_paths()[0]
    _run(
        [
            "g++",
            "-shared",
            "-o",
            lib,
            *objs,
            f"-L{tlib}",
            "-lc10",
            "-ltorch",
            "-ltorch_cpu",
            "-ltorch_python",
            f"-L{CUDA_LIB}",
            "-lcudart_static",
            "-lpthread",
            "-ldl",
            "-lrt",
        ]
    )
    # load in a fresh interpreter: registering the operator twice in one process is an error
    code = f"""
import torch
torch.ops.load_library({str(lib)!r})
op = torch.ops.regexlm.sample_step
print(op.default._schema)
B, V = 2, 40
i32 = lambda *s: torch.zeros(*s, dtype=torch.int32)
args = [torch.zeros(B, V), i32(B), i32(B), torch.ones(B), i32(B), torch.ones(B), torch.ones(B),
        None, i32(3, 4), i32(3), i32(V), i32(3), None, torch.zeros(B, dtype=torch.int64), i32(B), 0]
try:
    op(*args)
except RuntimeError as e:
    print("ERROR:", str(e).splitlines()[0])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "regexlm::sample_step(Tensor logits" in proc.stdout
    assert "Tensor? seen" in proc.stdout and "int stream" in proc.stdout
    assert "Tensor? seeds" in proc.stdout and "Tensor? steps" in proc.stdout
    assert "bitmask" not in proc.stdout
    assert "ERROR: logits must be a CUDA tensor" in proc.stdout


def test_setup_py_builds_exactly_the_csrc_translation_units():
    text = (CSRC.parent / "setup.py").read_text()
    assert '"--use_fast_math"' not in text
    from regexlm.ops.sample_cuda import jit_sources

    names = sorted(Path(p).name for p in jit_sources())
    assert names == sorted(p.name for p in [*CSRC.glob("*.cpp"), *CSRC.glob("*.cu")])
    assert len({Path(n).stem for n in names}) == len(names)  # object files cannot collide
