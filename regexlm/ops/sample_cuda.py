"""Loader for the CUDA extension (placeholder until the kernel lands)."""

from __future__ import annotations


def unavailable_reason() -> str | None:
    return "the CUDA extension regexlm._C is not built"
