"""Helpers for launching split rows: the device's SM count and per-row arrival counters.

When the batch is small, the fused kernels split each row's first pass across several programs
(blocks). Each program leaves partial statistics and takes a ticket from the row's arrival
counter; the program holding the last ticket combines and finishes the row, then sets the counter
back to zero. The counters therefore live across launches: one zeroed int32 buffer per device and
stream (launches on one stream run in order, so they never overlap on a counter).
"""

from __future__ import annotations

import torch

_SM_COUNT: dict[int, int] = {}
_COUNTERS: dict[tuple[str, int], torch.Tensor] = {}


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device (cached)."""
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNT:
        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNT[idx]


def arrival_counters(device: torch.device, rows: int) -> torch.Tensor:
    """A zeroed int32 buffer of at least `rows` counters for the current stream of `device`."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    key = (str(device), stream)
    buf = _COUNTERS.get(key)
    if buf is None or buf.numel() < rows:
        buf = _COUNTERS[key] = torch.zeros(max(rows, 64), dtype=torch.int32, device=device)
    return buf
