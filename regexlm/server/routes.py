"""The endpoints: ``POST /v1/completion/regex``, ``GET /health`` and ``GET /metrics``.

A completion request goes: validate the body (:mod:`~regexlm.server.schema`) -> reserve a place in
the queue (503 when full) -> compile the patterns off the loop (400 when refused) -> queue the job
-> wait for its result, the request's deadline or the client leaving, whichever comes first. With
``"stream": true`` the last step is a :class:`~regexlm.server.streaming.CompletionStream`.

Every failure becomes the service's JSON error; anything unexpected is logged with the request id
and answered with a 500 that carries no details.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from regexlm import __version__
from regexlm.errors import RegexError
from regexlm.server.access_log import request_id
from regexlm.server.compiler import PatternRefused
from regexlm.server.engine import EngineClosed, Job, JobCancelled, QueueFull
from regexlm.server.errors import (
    TIMEOUT_MESSAGE,
    APIError,
    describe_regex_error,
    error_response,
)
from regexlm.server.metrics import CONTENT_TYPE
from regexlm.server.schema import CompletionParams, parse_completion_request
from regexlm.server.streaming import CompletionStream, TokenEvents, wait_for_disconnect

if TYPE_CHECKING:
    from regexlm.server.app import Service

logger = logging.getLogger("regexlm.server")

INTERNAL_MESSAGE = (
    "The server failed to complete the request. This is a bug in the server, not "
    "in your request; the server log has the details (request id {})."
)


def _service(request: Request) -> Service:
    return request.app.state.service


def internal_error(request: Request | None, exc: BaseException) -> Response:
    rid = request_id(request.scope) if request is not None else "-"
    logger.error("request %s failed", rid, exc_info=exc)
    return error_response(500, INTERNAL_MESSAGE.format(rid))


def _timings(
    params: CompletionParams, completion: Any, job: Job, compile_s: float, started: float
) -> dict[str, float]:
    own = dict(getattr(completion, "timings", None) or {})
    return {
        "queue_s": round(job.queue_s, 6),
        "compile_s": round(compile_s + float(own.get("compile_s", 0.0)), 6),
        "prefill_s": round(float(own.get("prefill_s", 0.0)), 6),
        "decode_s": round(float(own.get("decode_s", 0.0)), 6),
        "total_s": round(time.perf_counter() - started, 6),
    }


def completion_body(
    service: Service, params: CompletionParams, job: Job, compile_s: float, started: float
) -> dict[str, Any]:
    """The 200 body for a finished job (the same for plain and streaming requests)."""
    completion = job.future.result()
    body = {
        "completion": completion.completion,
        "tokens_generated": completion.tokens_generated,
        "stop_reason": completion.stop_reason,
        "matched": completion.matched,
        "pattern_index": completion.pattern_index,
        "timings": _timings(params, completion, job, compile_s, started),
    }
    metrics = service.metrics
    metrics.completions.inc(stop_reason=str(completion.stop_reason))
    metrics.generated_tokens.inc(completion.tokens_generated)
    metrics.tokens_per_request.observe(completion.tokens_generated)
    return body


def job_error(request: Request, exc: BaseException) -> tuple[int, str]:
    """Status and message for a job that ended in an error."""
    if isinstance(exc, RegexError):
        return 400, describe_regex_error(exc)
    if isinstance(exc, EngineClosed):
        return 503, "The server is shutting down; send the request again to another instance."
    if isinstance(exc, JobCancelled):
        return 503, "The request was cancelled before it finished; send it again."
    if isinstance(exc, ValueError):  # the generator's own checks: a field, the prompt's length
        return 400, f"The request cannot be completed: {exc}."
    internal_error(request, exc)
    return 500, INTERNAL_MESSAGE.format(request_id(request.scope))


async def _prepare(request: Request, service: Service, started: float):
    """Validate, admit and compile; return (params, generation request, ticket, compiled index,
    compile seconds)."""
    limits = service.limits
    params = parse_completion_request(await request.body(), limits)
    generation_request = service.request_class(**params.generation_kwargs())
    try:
        generation_request.validate()
    except ValueError as exc:
        raise APIError(400, f"{exc}.") from None
    try:
        ticket = service.engine.admit()
    except QueueFull:
        raise APIError(
            503,
            "The server is busy: its queue is full. Retry after a short wait.",
            {"Retry-After": str(limits.retry_after)},
        ) from None
    except EngineClosed:
        raise APIError(
            503,
            "The server is shutting down and takes no new requests.",
            {"Retry-After": str(limits.retry_after)},
        ) from None
    try:
        remaining = started + limits.request_timeout - time.perf_counter()
        index, compile_s = await asyncio.wait_for(
            service.compiler.compile(params.patterns, params.pattern_is_list), max(remaining, 0)
        )
    except PatternRefused as exc:
        ticket.release()
        raise APIError(400, describe_regex_error(exc.error, exc.pattern_index)) from None
    except (asyncio.TimeoutError, TimeoutError):
        ticket.release()
        raise APIError(504, TIMEOUT_MESSAGE.format(limits.request_timeout)) from None
    except BaseException:
        ticket.release()
        raise
    return params, generation_request, ticket, index, compile_s


async def complete(request: Request) -> Response:
    """``POST /v1/completion/regex``."""
    service = _service(request)
    started = time.perf_counter()
    try:
        params, generation_request, ticket, index, compile_s = await _prepare(
            request, service, started
        )
    except APIError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    deadline = started + service.limits.request_timeout

    if params.stream:
        events = TokenEvents()
        job = service.engine.submit(ticket, generation_request, on_token=events, index=index)

        async def finish(job: Job) -> tuple[str, dict[str, Any]]:
            error = job.future.exception()
            if error is not None:
                status, message = job_error(request, error)
                return "error", {"error": message, "code": status}
            return "completion", completion_body(service, params, job, compile_s, started)

        return CompletionStream(
            service.engine, job, events, deadline, finish, service.limits.request_timeout
        )

    job = service.engine.submit(ticket, generation_request, index=index)
    gone = asyncio.ensure_future(wait_for_disconnect(request.receive))
    try:
        done, _ = await asyncio.wait(
            {job.future, gone},
            timeout=max(deadline - time.perf_counter(), 0),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        gone.cancel()
    if job.future in done:
        error = job.future.exception()
        if error is not None:
            status, message = job_error(request, error)
            return error_response(status, message)
        return JSONResponse(completion_body(service, params, job, compile_s, started))
    if gone in done:
        service.engine.cancel(job, "disconnect")
        request.scope["regexlm.status"] = 499
        return Response(status_code=499)  # nobody is there to read it
    service.engine.cancel(job, "timeout")
    return error_response(504, TIMEOUT_MESSAGE.format(service.limits.request_timeout))


async def health(request: Request) -> Response:
    """``GET /health``: 200 while serving, 503 while draining for shutdown."""
    service = _service(request)
    engine = service.engine
    if engine.closing:
        return error_response(
            503,
            "The server is shutting down: it finishes the requests in "
            "flight and takes no new ones.",
        )
    return JSONResponse(
        {
            "status": "ok",
            "version": __version__,
            "model": service.model_name,
            "waiting": engine.waiting,
            "running": engine.running,
            "max_batch_size": engine.max_batch_size,
        }
    )


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus text format."""
    return Response(_service(request).metrics.render(), media_type=CONTENT_TYPE)
