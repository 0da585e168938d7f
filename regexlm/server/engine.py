"""The engine: an asyncio front and one worker thread that drives the generator in batches.

Requests are admitted by the event loop and decoded by a single worker thread, since one thread
drives one :class:`~regexlm.generation.Generator`. The worker takes up to ``max_batch_size`` waiting
jobs, runs them through ``generate_batch`` together (each with its own prompt, patterns and
sampling parameters), hands each result back to the event loop, and starts over with whatever
arrived meanwhile. When it finds fewer requests waiting than a full batch while more are likely on
their way (admitted requests still compiling their patterns, or fewer waiting than the last batch
held, whose clients tend to come back together), it waits for them: up to ``batch_window``
seconds, or a tenth of the last batch's duration when that is longer (capped at half a second).
Bursts and steady streams of clients then decode together instead of splitting into a small
batch and a large one that each cost a full decode.

A batch is bounded by prompt tokens too (``max_batch_tokens``): its prompts are left-padded to
the longest, so it holds rows x longest prompt tokens, and the prefill's time and memory grow
with that (its attention with the square of the length). The worker measures the waiting
prompts (with the generator's encoder, which keeps the ids for the batch) and takes jobs in
order while that product stays within the bound; the first job that would pass it starts the
next batch. A long prompt thus decodes with fewer others, or alone, and no mix of prompts the
limits allow takes the process past what one batch of the bound needs.

Life of a request:

1. :meth:`Engine.admit` reserves a place, or raises :class:`QueueFull` (the HTTP 503) when
   ``queue_size`` requests are already admitted but not yet decoding.
2. :meth:`Engine.submit` queues the :class:`Job` once its patterns compiled, with the compiled
   index, which the worker hands to the generator: the worker thread never compiles.
3. The worker decodes it; ``on_token`` forwards each token to the job's listener on the loop
   (streaming), and ``should_stop`` lets the generator drop a job that was cancelled meanwhile.
   A failure that concerns one job alone (its prompt does not fit the model's context, the
   tokenizer fails on it, ...) fails that job; the others of its batch finish in the same batch
   (``generate_batch(..., return_exceptions=True)``). Only a failure of the batch as a whole
   (the model's forward pass) fails every job in it.
4. :meth:`Engine.cancel` (timeout, client gone) removes a waiting job at once, or flags a running
   one, which the generator then drops at its next step.

:meth:`Engine.drain` waits for the queue and the running batch to finish (graceful shutdown);
:meth:`Engine.close` then stops the worker.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from regexlm.server.metrics import ServiceMetrics

logger = logging.getLogger("regexlm.server.engine")

# While the last batch's clients come back, wait up to this fraction of that batch's duration
# (at most STRAGGLER_WAIT_CAP seconds): a slightly later start beats splitting them in two.
STRAGGLER_FRACTION = 0.1
STRAGGLER_WAIT_CAP = 0.5


class QueueFull(Exception):
    """Too many requests are waiting already."""


class EngineClosed(Exception):
    """The engine is shutting down and takes no new work."""


class JobCancelled(Exception):
    """The job was cancelled before it produced a result."""


@dataclass(eq=False)
class Job:
    """One request's way through the engine."""

    request: Any  # GenerationRequest
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    #: Called on the event loop with (token_id, text_delta) for each accepted token.
    on_token: Callable[[int, str], None] | None = None
    submitted_at: float = field(default_factory=time.perf_counter)
    started_at: float | None = None
    finished_at: float | None = None
    cancel_reason: str | None = None
    tokens_seen: int = 0
    #: The job's place in the queue, released when it starts decoding or leaves.
    ticket: Ticket | None = None
    #: The compiled token index of the request's patterns (None: the generator compiles).
    index: Any = None
    #: The prompt's length in tokens, for ``max_batch_tokens`` (None until the worker measures
    #: it; 0 where it is not measured: no bound, or no encoder).
    prompt_tokens: int | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel_reason is not None

    @property
    def queue_s(self) -> float:
        start = self.started_at if self.started_at is not None else time.perf_counter()
        return start - self.submitted_at


class Ticket:
    """A reserved place in the queue; released once the job starts decoding or gives up."""

    __slots__ = ("_engine", "released")

    def __init__(self, engine: Engine):
        self._engine = engine
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._engine._release()


def _resolve(
    future: asyncio.Future, result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class EngineCounters:
    """The counters both engines report for /health and /metrics, from the same four fields:
    ``_queue`` (waiting jobs), ``_admitted`` (tickets not yet released), ``_running`` and
    ``_closing``."""

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def waiting(self) -> int:
        """Requests admitted and not yet decoding."""
        return self._admitted

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def closing(self) -> bool:
        return self._closing


class Engine(EngineCounters):
    """Batch concurrent requests onto one generator, from a single worker thread."""

    def __init__(
        self,
        generator: Any,
        *,
        max_batch_size: int,
        queue_size: int,
        metrics: ServiceMetrics,
        batch_window: float = 0.02,
        max_batch_tokens: int | None = None,
    ):
        self.generator = generator
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.queue_size = queue_size
        self.metrics = metrics
        self.batch_window = batch_window
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._admitted = 0  # tickets not yet released (compiling or waiting)
        self._running: list[Job] = []
        self._last_batch_size = 0
        self._last_batch_seconds = 0.0
        self._closing = False
        self._thread: threading.Thread | None = None
        self.batches = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (once). Requests admitted before a drain are still served."""
        with self._cond:
            if self._thread is None:
                if self._closing:
                    raise EngineClosed
                self._thread = threading.Thread(
                    target=self._work, name="regexlm-engine", daemon=True
                )
                self._thread.start()

    async def drain(self, timeout: float | None = None) -> bool:
        """Stop admitting; wait until every queued and running job finished. True if it did."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.perf_counter() + timeout
        while True:
            with self._cond:
                idle = not self._queue and not self._running and self._admitted == 0
            if idle:
                return True
            if deadline is not None and time.perf_counter() > deadline:
                return False
            await asyncio.sleep(0.02)

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the worker; jobs still queued are failed with :class:`EngineClosed`."""
        with self._cond:
            self._closing = True
            leftover = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in leftover:
            self._post(job, error=EngineClosed())
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the front (event loop) ----------------------------------------------------------------

    def admit(self) -> Ticket:
        """Reserve a place in the queue, or raise :class:`QueueFull` / :class:`EngineClosed`."""
        with self._cond:
            if self._closing:
                raise EngineClosed
            if self._admitted >= self.queue_size:
                raise QueueFull
            self._admitted += 1
        return Ticket(self)

    def _release(self) -> None:
        with self._cond:
            self._admitted -= 1
            self._cond.notify_all()

    def submit(
        self,
        ticket: Ticket,
        request: Any,
        on_token: Callable[[int, str], None] | None = None,
        index: Any = None,
    ) -> Job:
        """Queue a request whose place ``ticket`` holds, with its compiled ``index``; its result
        arrives on ``job.future``."""
        self.start()
        loop = asyncio.get_running_loop()
        job = Job(
            request=request,
            future=loop.create_future(),
            loop=loop,
            on_token=on_token,
            ticket=ticket,
            index=index,
        )
        # A caller that gave up (timeout, disconnect) never reads the outcome; mark it read.
        job.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        with self._cond:
            self._queue.append(job)
            self._cond.notify_all()
        return job

    def cancel(self, job: Job, reason: str) -> None:
        """Drop a job: at once if it is still waiting, at the generator's next step if running."""
        with self._cond:
            if job.cancel_reason is not None or job.future.done():
                return
            job.cancel_reason = reason
            waiting = job in self._queue
            if waiting:
                self._queue.remove(job)
        self.metrics.cancelled.inc(reason=reason)
        if waiting:
            job.ticket.release()
            _resolve(job.future, error=JobCancelled(reason))

    # -- the worker thread ---------------------------------------------------------------------

    def _post(self, job: Job, result: Any = None, error: BaseException | None = None) -> None:
        """Hand a result to the job's event loop (from the worker thread)."""
        try:
            job.loop.call_soon_threadsafe(_resolve, job.future, result, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _take_batch(self) -> list[Job] | None:
        while True:
            with self._cond:
                if not self._wait_for_jobs():
                    return None
            while True:  # measure the prompts that may join (outside the lock), then take them
                with self._cond:
                    unmeasured = [
                        job
                        for job in itertools.islice(self._queue, self.max_batch_size)
                        if job.prompt_tokens is None
                    ]
                    if not unmeasured:
                        batch = self._pop_batch()
                        break
                self._measure(unmeasured)
            if batch:
                break  # (else every waiting job was cancelled meanwhile: wait again)
        now = time.perf_counter()
        for job in batch:
            job.started_at = now
            job.ticket.release()
            self.metrics.queue_wait.observe(job.queue_s)
        return batch

    def _wait_for_jobs(self) -> bool:
        """Wait (holding the lock) until jobs are queued and the stragglers had their moment;
        False when the engine is closing with nothing left to do."""
        while not self._queue:
            if self._closing and self._admitted == 0:
                return False
            self._cond.wait(0.5)
        # Give stragglers a moment to join: requests still compiling their patterns, and the
        # clients of the last batch, who tend to come back together.
        window = max(
            self.batch_window,
            min(STRAGGLER_FRACTION * self._last_batch_seconds, STRAGGLER_WAIT_CAP),
        )
        if window > 0 and len(self._queue) < self.max_batch_size:
            deadline = time.perf_counter() + window
            while len(self._queue) < self.max_batch_size and (
                self._admitted > len(self._queue) or len(self._queue) < self._last_batch_size
            ):
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
        return True

    def _measure(self, jobs: list[Job]) -> None:
        """Each job's prompt length in tokens, on the worker thread: the generator encodes the
        prompt for its batch anyway, and keeps the ids it made here (no second encoding)."""
        encode = getattr(self.generator, "encode_prompt", None) if self.max_batch_tokens else None
        for job in jobs:
            try:
                job.prompt_tokens = 0 if encode is None else len(encode(job.request.prompt))
            except Exception:  # the generator reports it for the job's row, as before
                job.prompt_tokens = 0

    def _pop_batch(self) -> list[Job]:
        """(Holding the lock) the waiting jobs, in order, while the batch stays within
        ``max_batch_size`` rows and ``max_batch_tokens`` padded prompt tokens."""
        batch: list[Job] = []
        longest = 0  # the batch's longest prompt, in tokens
        while self._queue and len(batch) < self.max_batch_size:
            tokens = max(longest, self._queue[0].prompt_tokens or 0)
            if (
                batch
                and self.max_batch_tokens
                and tokens * (len(batch) + 1) > self.max_batch_tokens
            ):
                break  # padded to the longest, the next job would pass the bound
            batch.append(self._queue.popleft())
            longest = tokens
        self._running = batch
        self._last_batch_size = len(batch)
        return batch

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._run_batch(batch)
            except BaseException as exc:  # never let the worker die with jobs pending
                logger.exception("the engine failed a batch of %d", len(batch))
                for job in batch:
                    self._post(job, error=exc)
            finally:
                with self._cond:
                    self._running = []
                    self._cond.notify_all()

    def _run_batch(self, batch: list[Job]) -> None:
        live = []
        for job in batch:
            if job.cancelled:
                self._post(job, error=JobCancelled(job.cancel_reason or "cancelled"))
            else:
                live.append(job)
        if not live:
            return
        batch = live
        with self._cond:
            self._running = batch
        self.batches += 1
        self.metrics.batch_size.observe(len(batch))
        started = time.perf_counter()
        try:
            outcomes = self._generate(batch)
        except Exception as exc:  # the batch as a whole failed: every job in it did
            logger.warning("a batch of %d failed (%s: %s)", len(batch), type(exc).__name__, exc)
            for job in batch:
                self._post(job, error=exc)
            return
        finally:
            self._last_batch_seconds = time.perf_counter() - started
            self.metrics.batch_duration.observe(self._last_batch_seconds)
        self._finish(batch, outcomes)

    def _generate(self, batch: list[Job]) -> list[Any]:
        def on_token(row: int, token_id: int, text: str) -> None:
            job = batch[row]
            job.tokens_seen += 1
            if job.on_token is not None and not job.cancelled:
                try:
                    job.loop.call_soon_threadsafe(job.on_token, token_id, text)
                except RuntimeError:
                    pass

        def should_stop(row: int) -> bool:
            return batch[row].cancelled

        outcomes = self.generator.generate_batch(
            [job.request for job in batch],
            on_token=on_token,
            should_stop=should_stop,
            indexes=[job.index for job in batch],
            return_exceptions=True,
        )
        if len(outcomes) != len(batch):
            raise RuntimeError(
                f"generate_batch returned {len(outcomes)} results for {len(batch)} requests"
            )
        return outcomes

    def _finish(self, batch: list[Job], outcomes: list[Any]) -> None:
        """Hand each job its own outcome: a Completion, or the exception that ended its row."""
        now = time.perf_counter()
        for job, outcome in zip(batch, outcomes, strict=True):
            job.finished_at = now
            if job.cancelled:
                self._post(job, error=JobCancelled(job.cancel_reason or "cancelled"))
            elif isinstance(outcome, BaseException):
                self._post(job, error=outcome)
            else:
                self._post(job, result=outcome)
