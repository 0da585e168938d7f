"""Pausing Python's cyclic garbage collector around allocation-heavy compile work.

Compiling a pattern allocates tens of thousands of small objects (the parse tree, the NFA's
lists, the lazy automaton's tables) in a few milliseconds, and creates no garbage cycles worth
collecting on the spot. Left running, the collector counts those allocations and runs its young
generations' passes over them again and again while the compile runs (about 15 % of a large
compile), and now and then a full collection over every object the process holds (a loaded
tokenizer is hundreds of thousands: ten to a few hundred milliseconds), paid by whichever
compile crosses the threshold. Pausing the collector for the compile removes the repeated
passes; the collections the compile's objects still owe run once, at the next allocation after
it. A full collection stays cheap only where the process froze its long-lived objects after
start-up (``gc.freeze()``, as ``regexlm serve`` does).

The pause nests and is shared by threads: the collector is off while any compile runs and is
switched back on when the last one ends, unless it was already off when the first began (a
caller that disabled it keeps it disabled).
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_restore = False


@contextmanager
def collector_paused():
    """Run the body with the cyclic garbage collector switched off (see the module)."""
    global _depth, _restore
    with _lock:
        if _depth == 0:
            _restore = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore:
                gc.enable()
