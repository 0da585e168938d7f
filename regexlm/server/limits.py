"""The service's limits, in one frozen record, and the middleware that enforces the body size.

Every resource a client can make the service spend is bounded here: the request body, the prompt,
the number and length of patterns, the tokens per request, the batch, the waiting queue, the time
a pattern may take to compile and the time a request may take in all. ``regexlm serve`` exposes
each as a flag; :func:`~regexlm.server.app.create_app` takes each as a keyword.

:class:`BodySizeLimitMiddleware` reads at most ``max_body_bytes`` of a request body. A declared
``Content-Length`` above the limit is refused before a single body byte is read; a chunked body is
read until it crosses the limit and refused then. Either way the answer is a JSON 413 and the
connection is closed, so the rest of an oversized upload is never buffered. A body that fits is
handed to the application in one piece, and later ``receive`` calls go to the server, so routes
can still see the client disconnect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regexlm.server.errors import send_error


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request, and all requests together, may ask of the service."""

    #: Largest ``max_new_tokens`` a request may ask for.
    max_new_tokens_limit: int = 256
    #: Most requests decoded together in one batch.
    max_batch_size: int = 32
    #: Most prompt tokens in one batch, each row counted as long as the batch's longest
    #: prompt (rows are padded to it): a long prompt decodes with fewer others, or alone.
    max_batch_tokens: int = 8192
    #: Most requests admitted but not yet decoding (compiling or waiting); more get 503.
    queue_size: int = 256
    #: Seconds a request may take from arrival to its answer; longer ones get 504.
    request_timeout: float = 120.0
    #: Largest request body, in bytes; larger ones get 413.
    max_body_bytes: int = 256 * 1024
    #: Longest prompt, in characters.
    max_prompt_chars: int = 8192
    #: Most patterns in one request.
    max_patterns: int = 16
    #: Longest single pattern, in characters.
    max_pattern_chars: int = 2000
    #: Seconds a pattern may take to compile before it is called too complex.
    compile_timeout: float = 10.0
    #: Seconds the engine waits for more requests before starting a batch that is not full.
    batch_window: float = 0.02
    #: Seconds a client is told to wait (``Retry-After``) when the queue is full.
    retry_after: int = 1

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type == "int":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(
                        f"limit {field.name} must be a positive integer, got {value!r}"
                    )
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ValueError(f"limit {field.name} must be a finite number, got {value!r}")
            if value < 0 or (value == 0 and field.name != "batch_window"):
                raise ValueError(f"limit {field.name} must be positive, got {value!r}")


class BodyTooLarge(Exception):
    """A request body crossed ``max_body_bytes``."""


class BodySizeLimitMiddleware:
    """Refuse request bodies over ``max_body_bytes`` with a JSON 413, reading no more than that."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _message(self) -> str:
        return (
            f"The request body is larger than this server accepts ({self.max_body_bytes} "
            "bytes). Send a shorter prompt or fewer patterns."
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is None and _has_header(scope, b"content-length"):
            await send_error(
                send,
                400,
                "The Content-Length header is not a valid number.",
                {"Connection": "close"},
            )
            return
        if declared is not None and declared > self.max_body_bytes:
            await send_error(send, 413, self._message(), {"Connection": "close"})
            return
        try:
            body, disconnected = await self._read_body(receive)
        except BodyTooLarge:
            await send_error(send, 413, self._message(), {"Connection": "close"})
            return
        if disconnected:
            return  # the client left before sending its request; there is no one to answer
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then defers to the server's."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _has_header(scope: Scope, name: bytes) -> bool:
    return any(key.lower() == name for key, _ in scope.get("headers", ()))


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            if not text.isdigit():
                return None
            # Absurdly long numbers are over any limit; do not build huge ints from them.
            return int(text) if len(text) <= 18 else 10**18
    return None
