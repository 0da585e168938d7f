"""Ops fixtures. Without a CUDA device, Triton kernels run in Triton's CPU interpreter.

``TRITON_INTERPRET=1`` must be set before any ``@triton.jit`` function is defined (Triton reads it
when the decorator runs), so it is set here, before the test modules import `regexlm.ops`'s
Triton module. On a machine with a GPU the compiled kernels are used instead.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
