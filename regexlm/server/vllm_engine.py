"""The service's engine on vLLM: the same interface as :class:`~regexlm.server.engine.Engine`.

Routes, streaming and the lifespan talk to an engine through ``admit``, ``submit``, ``cancel``,
``drain``, ``close`` and the counters ``waiting`` / ``running``; which engine runs is chosen
once, when the app is built (``regexlm serve --engine hf|vllm``). This one hands each request
to vLLM's ``AsyncLLM`` (:class:`regexlm.vllm.engine.VllmModel`), which batches continuously:
there are no batches to wait for, a request joins the running ones at vLLM's next step.

Life of a request, as in the transformers engine:

1. :meth:`VllmEngine.admit` reserves a place, or raises :class:`QueueFull` when ``queue_size``
   requests are admitted and not yet decoding.
2. :meth:`VllmEngine.submit` queues the job (with the index the front compiled); while fewer than ``max_batch_size`` requests are in
   vLLM, the next one is started (its place is released then) as a task on the event loop.
3. The task follows vLLM's output; ``on_token`` sees each token as it arrives.
4. :meth:`VllmEngine.cancel` drops a waiting job at once, or cancels a running one's task,
   which aborts its vLLM request.

:meth:`VllmEngine.drain` waits for everything admitted to finish; :meth:`VllmEngine.close`
then shuts vLLM down. vLLM itself is started by :meth:`VllmEngine.start` (from the app's
lifespan, inside the event loop its async engine will serve), unless it was given running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from regexlm.server.engine import (
    EngineClosed,
    EngineCounters,
    Job,
    JobCancelled,
    QueueFull,
    Ticket,
    _resolve,
)
from regexlm.server.metrics import ServiceMetrics

logger = logging.getLogger("regexlm.server.engine")


class VllmEngine(EngineCounters):
    """Requests onto vLLM's async engine (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        *,
        max_batch_size: int,
        queue_size: int,
        metrics: ServiceMetrics,
        batch_window: float = 0.0,
        max_batch_tokens: int | None = None,  # vLLM bounds its own (max_num_batched_tokens)
    ):
        # ``model``: a VllmModel, or anything with start(), shutdown() and
        # ``async generate(request, on_token)``.
        self.model = model
        self.max_batch_size = max_batch_size
        self.queue_size = queue_size
        self.metrics = metrics
        self.batch_window = batch_window  # kept for the interface: vLLM batches continuously
        self._queue: deque[Job] = deque()
        self._admitted = 0
        self._running: dict[Job, asyncio.Task] = {}
        self._closing = False
        self._started = False
        self.batches = 0  # requests started (no batches here: kept for the interface)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start vLLM (once); blocks until its engine is ready."""
        if self._started:
            return
        if self._closing:
            raise EngineClosed
        self.model.start()
        self._started = True

    async def drain(self, timeout: float | None = None) -> bool:
        """Stop admitting; wait until every admitted request finished. True if they did."""
        self._closing = True
        deadline = None if timeout is None else time.perf_counter() + timeout
        while self._queue or self._running or self._admitted:
            if deadline is not None and time.perf_counter() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def close(self, timeout: float | None = 5.0) -> None:
        """Fail what still waits, cancel what runs, shut vLLM down."""
        self._closing = True
        while self._queue:
            job = self._queue.popleft()
            job.ticket.release()
            _resolve(job.future, error=EngineClosed())
        for task in list(self._running.values()):
            task.cancel()
        if self._started:
            self._started = False
            self.model.shutdown()

    # -- the front (event loop) ----------------------------------------------------------------

    def admit(self) -> Ticket:
        if self._closing:
            raise EngineClosed
        if self._admitted >= self.queue_size:
            raise QueueFull
        self._admitted += 1
        return Ticket(self)

    def _release(self) -> None:
        self._admitted -= 1

    def submit(
        self,
        ticket: Ticket,
        request: Any,
        on_token: Callable[[int, str], None] | None = None,
        index: Any = None,
    ) -> Job:
        """Queue a request whose place ``ticket`` holds, with its compiled ``index``; its result
        arrives on ``job.future``."""
        loop = asyncio.get_running_loop()
        job = Job(
            request=request,
            future=loop.create_future(),
            loop=loop,
            on_token=on_token,
            ticket=ticket,
            index=index,
        )
        job.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append(job)
        self._pump()
        return job

    def cancel(self, job: Job, reason: str) -> None:
        if job.cancel_reason is not None or job.future.done():
            return
        job.cancel_reason = reason
        self.metrics.cancelled.inc(reason=reason)
        if job in self._queue:
            self._queue.remove(job)
            job.ticket.release()
            _resolve(job.future, error=JobCancelled(reason))
            return
        task = self._running.get(job)
        if task is not None:
            task.cancel()

    # -- running -------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start waiting jobs while vLLM has room for them."""
        while self._queue and len(self._running) < self.max_batch_size:
            job = self._queue.popleft()
            job.started_at = time.perf_counter()
            job.ticket.release()
            self.metrics.queue_wait.observe(job.queue_s)
            self.batches += 1
            self._running[job] = asyncio.ensure_future(self._run(job))

    async def _run(self, job: Job) -> None:
        def on_token(token_id: int, text: str) -> None:
            job.tokens_seen += 1
            if job.on_token is not None and not job.cancelled:
                job.on_token(token_id, text)

        try:
            completion = await self.model.generate(job.request, on_token=on_token, index=job.index)
        except asyncio.CancelledError:
            _resolve(job.future, error=JobCancelled(job.cancel_reason or "cancelled"))
        except ValueError as exc:  # a pattern, a field, a prompt too long: the request's own
            _resolve(job.future, error=exc)
        except Exception as exc:
            logger.exception("vLLM failed a request")
            _resolve(job.future, error=exc)
        else:
            job.finished_at = time.perf_counter()
            if job.cancelled:
                _resolve(job.future, error=JobCancelled(job.cancel_reason or "cancelled"))
            else:
                _resolve(job.future, result=completion)
        finally:
            self._running.pop(job, None)
            if not self._closing or self._queue:
                self._pump()
