"""Pattern compilation for the service: off the event loop, under a time limit, handed over.

Compiling a pattern (parse, automaton, token index) takes from a millisecond to seconds, so it
never runs on the event loop, and never on the decoding thread: a small thread pool runs the
generator's ``compile``, and the index it returns travels with the request to the engine
(``generate_batch(..., indexes=...)``), so a batch never compiles, whatever the generator's own
pattern cache has dropped meanwhile. Around the pool:

* **no second cache of indexes.** The generator's cache is the one that holds indexes. Here a
  weak map remembers the indexes that are alive anyway (in that cache, or carried by requests
  still waiting), so a pattern in use is answered on the loop without a trip to the pool, and
  keeps nothing alive by itself.
* **a cache of refusals** (a syntax error, an unsupported construct, a pattern too complex or an
  empty language), a bounded LRU keyed by the tuple of patterns, so a client repeating a bad
  pattern is answered at once. An index whose automaton went past its limits on a row while
  decoding (``index.failure``) joins it the next time its pattern is asked for.
* **single flight**: concurrent requests for the same patterns wait on one compilation.
* **a time limit** per compilation, measured from the moment a thread starts it (time spent
  waiting for a free thread is load, not complexity, and counts only against the request's own
  time limit). A compilation that outlives it is refused as too complex, and that refusal is
  remembered, so the answer for a pattern does not flip once the abandoned compilation finishes
  in the background (a thread cannot be stopped; the automaton layer's own time limit ends it
  soon after).

Python's own ``re`` parses each pattern first: it is the oracle of the dialect, and its message
and position are what a user needs to fix a typo. All bookkeeping happens on the event loop
thread; the pool threads only compile.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from regexlm.errors import PatternTooComplexError, RegexError, RegexSyntaxError
from regexlm.server.metrics import ServiceMetrics


@dataclass
class _Flight:
    """One compilation in progress, shared by every request that waits for it."""

    started: asyncio.Event
    future: asyncio.Future | None = None
    started_at: float = 0.0


@dataclass(frozen=True)
class CompileFailure:
    """A remembered refusal: the error and, for a list of patterns, the index it concerns."""

    error: RegexError
    pattern_index: int | None


class PatternRefused(Exception):
    """The patterns cannot be used; carries the library error and the offending index."""

    def __init__(self, failure: CompileFailure):
        super().__init__(str(failure.error))
        self.error = failure.error
        self.pattern_index = failure.pattern_index


def check_syntax(patterns: tuple[str, ...]) -> None:
    """Parse each pattern with Python's ``re``; raise :class:`RegexSyntaxError` on the first bad one."""
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            error = RegexSyntaxError(exc.msg, pattern, exc.pos)
            error.pattern_index = i
            raise error from None
        except RecursionError:
            error = PatternTooComplexError("the pattern nests groups too deeply", limit="nesting")
            error.pattern_index = i
            raise error from None
        except (OverflowError, ValueError) as exc:
            error = PatternTooComplexError(
                f"the pattern is too large for Python's re: {exc}", limit="size"
            )
            error.pattern_index = i
            raise error from None


def _index_of(error: RegexError, patterns: tuple[str, ...], is_list: bool) -> int | None:
    if not is_list:
        return None
    index = getattr(error, "pattern_index", None)
    if isinstance(index, int):
        return index
    source = getattr(error, "pattern", None)
    if isinstance(source, str) and source in patterns:
        return patterns.index(source)
    return None


def _error_kind(error: RegexError) -> str:
    return {
        "RegexSyntaxError": "syntax",
        "UnsupportedRegexError": "unsupported",
        "PatternTooComplexError": "too_complex",
        "EmptyLanguageError": "empty_language",
    }.get(type(error).__name__, "other")


class PatternCompiler:
    """Compile patterns in a thread pool, once at a time, within ``timeout`` seconds.

    ``max_failures`` and ``max_failure_chars`` (the patterns' characters, summed) bound the
    cache of refusals, so clients sending ever new bad patterns cannot grow it past a few MB.
    """

    def __init__(
        self,
        compile_fn: Callable[[str | list[str]], object],
        *,
        timeout: float,
        metrics: ServiceMetrics,
        workers: int = 2,
        max_failures: int = 1024,
        max_failure_chars: int = 2_000_000,
    ):
        self._compile_fn = compile_fn
        self.timeout = timeout
        self.metrics = metrics
        self.max_failures = max_failures
        self.max_failure_chars = max_failure_chars
        self._failure_chars = 0
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="regexlm-compile")
        self._failures: OrderedDict[tuple[str, ...], CompileFailure] = OrderedDict()
        self._live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._inflight: dict[tuple[str, ...], _Flight] = {}

    def _run(
        self,
        patterns: tuple[str, ...],
        is_list: bool,
        flight: _Flight,
        loop: asyncio.AbstractEventLoop,
    ) -> tuple[object, float]:
        started = flight.started_at = time.perf_counter()
        loop.call_soon_threadsafe(flight.started.set)
        check_syntax(patterns)
        index = self._compile_fn(list(patterns) if is_list else patterns[0])
        settle = getattr(index, "settle", None)
        if settle is not None:  # explore here, under the time limit, not beside a batch's prefill
            settle()
        return index, time.perf_counter() - started

    def _refuse(self, key: tuple[str, ...], failure: CompileFailure) -> None:
        if key not in self._failures:
            self._failure_chars += sum(map(len, key))
        self._failures[key] = failure
        self._failures.move_to_end(key)
        while len(self._failures) > 1 and (
            len(self._failures) > self.max_failures or self._failure_chars > self.max_failure_chars
        ):
            old, _ = self._failures.popitem(last=False)
            self._failure_chars -= sum(map(len, old))

    def _remember_live(self, key: tuple[str, ...], index: object) -> None:
        """Note a compiled index weakly: it is found here only while something else holds it."""
        try:
            self._live[key] = index
        except TypeError:  # an index that cannot be weakly referenced: look it up again
            pass

    def _settle(self, key: tuple[str, ...], is_list: bool, future: asyncio.Future) -> None:
        self._inflight.pop(key, None)
        if future.cancelled() or key in self._failures:
            return  # already refused for taking too long: keep that answer
        error = future.exception()
        if error is None:
            index, seconds = future.result()
            self.metrics.compile_duration.observe(seconds)
            self._remember_live(key, index)
        elif isinstance(error, RegexError):
            self.metrics.compile_errors.inc(kind=_error_kind(error))
            self._refuse(key, CompileFailure(error, _index_of(error, key, is_list)))

    async def compile(self, patterns: tuple[str, ...], is_list: bool) -> tuple[object, float]:
        """The compiled index of ``patterns`` and the seconds this call waited for it.

        Raises :class:`PatternRefused` when they cannot be used; any other exception is a bug
        in a lower layer and propagates.
        """
        started = time.perf_counter()
        key = tuple(patterns)
        failure = self._failures.get(key)
        if failure is not None:
            self._failures.move_to_end(key)
            self.metrics.compile_cache_hits.inc()
            raise PatternRefused(failure)
        index = self._live.get(key)
        if index is not None:
            self.metrics.compile_cache_hits.inc()
            self._check_usable(key, index)
            return index, 0.0
        flight = self._inflight.get(key)
        if flight is not None:
            self.metrics.compile_cache_hits.inc()
        else:
            self.metrics.compile_cache_misses.inc()
            loop = asyncio.get_running_loop()
            flight = _Flight(started=asyncio.Event())
            flight.future = loop.run_in_executor(self._pool, self._run, key, is_list, flight, loop)
            self._inflight[key] = flight
            flight.future.add_done_callback(lambda f: self._settle(key, is_list, f))
        future = flight.future
        try:
            if not flight.started.is_set():
                # Waiting for a free thread: bounded by the caller's deadline, not by ours.
                waiter = asyncio.ensure_future(flight.started.wait())
                try:
                    await asyncio.wait({waiter, future}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
            remaining = self.timeout - (time.perf_counter() - flight.started_at)
            index, _ = await asyncio.wait_for(asyncio.shield(future), timeout=max(remaining, 0.0))
        except (asyncio.TimeoutError, TimeoutError):
            if future.done() and not future.cancelled() and future.exception() is None:
                return future.result()[0], time.perf_counter() - started  # just in time
            failure = self._failures.get(key)
            if failure is None:
                error = PatternTooComplexError(
                    f"compiling it took longer than this server's limit of {self.timeout:g} s",
                    limit="timeout",
                )
                failure = CompileFailure(error, None)
                self.metrics.compile_errors.inc(kind="too_complex")
                self._refuse(key, failure)
            raise PatternRefused(failure) from None
        except RegexError as error:
            raise PatternRefused(CompileFailure(error, _index_of(error, key, is_list))) from None
        self._check_usable(key, index)
        return index, time.perf_counter() - started

    def _check_usable(self, key: tuple[str, ...], index: object) -> None:
        """Refuse, and remember, an index that has stopped building rows: a pattern whose
        automaton went past its limits on a row while decoding is refused from then on, rather
        than admitted again to fail after its prefill."""
        error = getattr(index, "failure", None)
        if isinstance(error, RegexError):
            failure = CompileFailure(error, None)
            self.metrics.compile_errors.inc(kind=_error_kind(error))
            self._refuse(key, failure)
            raise PatternRefused(failure)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
