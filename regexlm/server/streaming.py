"""Server-Sent Events for ``"stream": true``: one event per token, then the whole answer.

The stream is a pure ASGI response. It sends::

    event: token
    data: {"index": 0, "token_id": 1234, "text": "20"}

for each token as the engine accepts it (``text`` is the token's decoded text; it is empty while a
token ends inside a multi-byte character, and the next token's text carries the whole character),
then one final event with exactly the body a non-streaming request would get::

    event: completion
    data: {"completion": "2024-05-17", "tokens_generated": 10, "stop_reason": "pattern_match", ...}

Errors found before the first token (validation, patterns, a full queue, a prompt too long for the
model, a timeout while waiting) are ordinary JSON answers with their status: the 200 and the
event stream only start with the first token. An error after that (the request timed out,
generation failed) ends the stream with ``event: error`` and the usual
``{"error": ..., "code": ...}`` object. While streaming, the
response listens for the client leaving and cancels the job when it does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from regexlm.server.engine import Engine, Job
from regexlm.server.errors import TIMEOUT_MESSAGE, send_error

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    """One SSE event; JSON escapes newlines, so ``data`` is always a single line."""
    payload = json.dumps(data, ensure_ascii=False, allow_nan=False)
    return f"event: {event}\ndata: {payload}\n\n".encode()


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when the client has gone away (the request body was already read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class TokenEvents:
    """The per-token listener a streaming job reports to (on the event loop), and its buffer."""

    def __init__(self) -> None:
        self.pending: deque[tuple[int, str]] = deque()
        self.arrived = asyncio.Event()

    def __call__(self, token_id: int, text: str) -> None:
        self.pending.append((token_id, text))
        self.arrived.set()


class CompletionStream:
    """An ASGI response that streams one job's tokens and its final answer as SSE."""

    def __init__(
        self,
        engine: Engine,
        job: Job,
        events: TokenEvents,
        deadline: float,
        finish: Callable[[Job], Awaitable[tuple[str, dict[str, Any]]]],
        timeout_s: float,
    ):
        self.engine = engine
        self.job = job
        self.events = events
        self.deadline = deadline
        self.timeout_message = TIMEOUT_MESSAGE.format(timeout_s)
        # Turns the finished job into ("completion", body) or ("error", {"error", "code"}).
        self.finish = finish
        self._index = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            # Hold the 200 back until there is something to stream: a request that fails before
            # its first token (a prompt too long for the model, say) gets a plain JSON error.
            if not await self._first_event(scope, send, gone):
                return
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await self._stream(scope, send, gone)
        except OSError:  # the connection broke while we wrote to it
            self.engine.cancel(self.job, "disconnect")
            scope["regexlm.status"] = 499
        finally:
            gone.cancel()

    async def _first_event(self, scope: Scope, send: Send, gone: asyncio.Future) -> bool:
        """Wait for the first token or the end; answer plainly and return False on a failure."""
        job = self.job
        arrived = asyncio.ensure_future(self.events.arrived.wait())
        try:
            remaining = self.deadline - time.perf_counter()
            done, _ = await asyncio.wait(
                {arrived, gone, job.future},
                timeout=max(remaining, 0),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            arrived.cancel()
        if self.events.pending or (job.future.done() and job.future.exception() is None):
            return True
        if job.future.done():
            _, body = await self.finish(job)
            await send_error(send, body["code"], body["error"])
            return False
        if gone in done:
            self.engine.cancel(job, "disconnect")
            scope["regexlm.status"] = 499
            return False
        self.engine.cancel(job, "timeout")
        await send_error(send, 504, self.timeout_message)
        return False

    async def _send(self, send: Send, chunk: bytes, more: bool = True) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def _send_tokens(self, send: Send) -> None:
        pending = self.events.pending
        while pending:
            token_id, text = pending.popleft()
            await self._send(
                send, sse_event("token", {"index": self._index, "token_id": token_id, "text": text})
            )
            self._index += 1

    async def _stream(self, scope: Scope, send: Send, gone: asyncio.Future) -> None:
        job = self.job
        while True:
            self.events.arrived.clear()
            await self._send_tokens(send)
            if job.future.done():
                # Tokens are posted to the loop before the result, so none is left behind.
                event, body = await self.finish(job)
                await self._send(send, sse_event(event, body), more=False)
                return
            arrived = asyncio.ensure_future(self.events.arrived.wait())
            remaining = self.deadline - time.perf_counter()
            done, _ = await asyncio.wait(
                {arrived, gone, job.future},
                timeout=max(remaining, 0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            arrived.cancel()
            if arrived in done or job.future.done():
                continue
            if gone in done:
                self.engine.cancel(job, "disconnect")
                scope["regexlm.status"] = 499
                return
            self.engine.cancel(job, "timeout")
            await self._send(
                send, sse_event("error", {"error": self.timeout_message, "code": 504}), more=False
            )
            return
