"""Explorations started on a worker thread, beside the model's forward pass.

Compile leaves an index's exploration for its first use (:meth:`TokenIndex.settle`). A decoder
that is about to run the model and will need the tables right after starts the exploration
here: the walks (C and numpy, which release the interpreter lock for most of their time) then
overlap the forward pass instead of adding to it. Whoever reads the tables next calls
``settle()`` as usual, which waits for an exploration in progress and raises its failure again
if it failed (the worker keeps no error: each index's readers see their own).

One worker for the process: explorations are CPU work, and one at a time keeps them from
competing with the model for the cores. Overlapping pays only where the forward pass runs on an
accelerator and leaves the host free (:func:`worth_overlapping`): on the CPU the forward pass
already uses every core, and a new pattern's first token came no sooner with the exploration
beside it than before it (median 1.02x the time, 0.91x to 1.10x over the patterns:
``bench/bench_first_use.py``, recorded in ``bench/RESULTS.md``), so there the exploration
simply runs at the first use.
"""

from __future__ import annotations

import threading
from concurrent import futures

import torch

_worker: list[futures.ThreadPoolExecutor] = []
_worker_lock = threading.Lock()
THREAD_NAME = "regexlm-settle"


def worth_overlapping(device) -> bool:
    """Whether explorations should run beside a forward pass on ``device`` (not on the CPU)."""
    return torch.device(device).type != "cpu"


def settle_in_background(indexes) -> futures.Future | None:
    """Start the explorations the given indexes still have pending on the worker (each index
    once, in order); None when none is pending."""
    pending = {}
    for index in indexes:
        if not getattr(index, "settled", True):
            pending.setdefault(id(index), index)
    if not pending:
        return None
    with _worker_lock:
        if not _worker:
            _worker.append(futures.ThreadPoolExecutor(1, thread_name_prefix=THREAD_NAME))
    return _worker[0].submit(_settle_all, list(pending.values()))


def _settle_all(indexes) -> None:
    for index in indexes:
        try:
            index.settle()
        except Exception:  # noqa: S110 - raised again to the index's own readers by settle()
            pass
