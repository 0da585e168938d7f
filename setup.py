"""Build hooks: the CUDA sources travel with the package, and are compiled where CUDA can be.

`csrc/` stays at the repository root (the sdist carries it there too); ``build_py`` copies its
sources into the built package as ``regexlm/csrc/``, so a wheel holds them and
`regexlm.ops.sample_cuda` can JIT-build the extension from an installed package. An editable
install skips the copy: there the loader reads the checkout's `csrc/` directly.

The extension ``regexlm._C`` is built ahead of time when (1) torch is importable at build time
and is a CUDA build, and (2) a CUDA toolkit (nvcc) is found; ``REGEXLM_NO_CUDA_EXT=1`` turns it
off. Everywhere else the wheel is pure Python: the Triton and torch backends need no compiled
code, and `regexlm.ops` JIT-loads the packaged sources on demand.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
CSRC_PATTERNS = ("*.cu", "*.cpp", "*.h")


def csrc_files() -> list[Path]:
    """The CUDA sources: kernels (.cu), torch glue (.cpp) and the header they share (.h)."""
    return sorted(p for pattern in CSRC_PATTERNS for p in (ROOT / "csrc").glob(pattern))


class BuildPyWithCsrc(build_py):
    """``build_py`` that also copies `csrc/` into the built package as ``regexlm/csrc/``."""

    def _csrc_targets(self) -> list[tuple[Path, str]]:
        if getattr(self, "editable_mode", False):
            return []
        target = os.path.join(self.build_lib, "regexlm", "csrc")
        return [(src, os.path.join(target, src.name)) for src in csrc_files()]

    def run(self) -> None:
        super().run()
        for src, dst in self._csrc_targets():
            self.mkpath(os.path.dirname(dst))
            self.copy_file(str(src), dst, preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *(d for _, d in self._csrc_targets())]


def _cuda_extension():
    if os.environ.get("REGEXLM_NO_CUDA_EXT") == "1":
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import BuildExtension, CUDAExtension
    except Exception:
        return [], {}
    if (
        torch.version.cuda is None
        or shutil.which("nvcc") is None
        and not os.environ.get("CUDA_HOME")
    ):
        return [], {}
    # translation units only: kernels (.cu, no torch headers) and the torch glue (.cpp)
    csrc = ROOT / "csrc"
    sources = sorted(str(p.relative_to(ROOT)) for p in [*csrc.glob("*.cpp"), *csrc.glob("*.cu")])
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
setup(ext_modules=ext_modules, cmdclass={**cmdclass, "build_py": BuildPyWithCsrc})
