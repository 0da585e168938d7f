"""Build hook: compiles the `csrc/` CUDA extension only where CUDA can be built.

The extension is built when (1) torch is importable at build time and is a CUDA build, and
(2) a CUDA toolkit (nvcc) is found. Everywhere else the install is pure Python: the Triton
and torch backends need no compiled code, and `regexlm.ops` JIT-loads `csrc/` on demand.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import setup


def _cuda_extension():
    if os.environ.get("REGEXLM_NO_CUDA_EXT") == "1":
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CUDAExtension
    except Exception:
        return [], {}
    if torch.version.cuda is None or shutil.which("nvcc") is None and not os.environ.get("CUDA_HOME"):
        return [], {}
    root = Path(__file__).parent
    # translation units only: kernels (.cu, no torch headers) and the torch glue (.cpp)
    csrc = root / "csrc"
    sources = sorted(str(p.relative_to(root)) for p in [*csrc.glob("*.cpp"), *csrc.glob("*.cu")])
    if not sources:
        return [], {}
    # no --use_fast_math: the kernels round like the torch reference (see csrc/ comments);
    # no -std flag: torch's build helpers pass the standard its headers need.
    ext = CUDAExtension(
        name="regexlm._C",
        sources=sources,
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3"]},
    )
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = _cuda_extension()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
