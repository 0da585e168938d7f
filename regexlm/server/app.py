"""The Starlette application: routes, middleware, error handlers and the engine's lifespan.

:func:`create_app` wires a generator (anything with ``compile(pattern) -> index`` and
``generate_batch(requests, on_token=, should_stop=, indexes=, return_exceptions=)``, normally a
:class:`regexlm.generation.Generator`) into an HTTP service. The middleware runs, outermost
first: request id and access log -> metrics -> API key -> body size limit -> router.
Starlette's own outermost error middleware turns anything that escapes into the JSON 500.

The lifespan starts the engine's worker on startup. On shutdown (after uvicorn has stopped
accepting connections and let the open ones finish) it drains the engine, so every request
that was accepted gets its answer, then stops the worker and the compile threads.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from regexlm.server import routes
from regexlm.server.access_log import RequestIdMiddleware
from regexlm.server.auth import APIKeyChecker, APIKeyMiddleware
from regexlm.server.compiler import PatternCompiler
from regexlm.server.engine import Engine
from regexlm.server.errors import error_response
from regexlm.server.limits import BodySizeLimitMiddleware, Limits
from regexlm.server.metrics import MetricsMiddleware, ServiceMetrics

logger = logging.getLogger("regexlm.server")

COMPLETION_PATH = "/v1/completion/regex"


@dataclass
class Service:
    """What the endpoints share: limits, engine, compiler, metrics."""

    limits: Limits
    engine: Engine
    compiler: PatternCompiler
    metrics: ServiceMetrics
    request_class: type
    model_name: str


_STATUS_MESSAGES = {
    404: "There is nothing at this path. The API is POST /v1/completion/regex; "
    "GET /health and GET /metrics report on the server.",
    405: "This method is not allowed on this path; the Allow header lists the ones that are.",
}


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = _STATUS_MESSAGES.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return routes.internal_error(request, exc)


def _default_request_class() -> type:
    from regexlm.generation import GenerationRequest

    return GenerationRequest


def create_app(
    generator: Any,
    *,
    api_keys: Iterable[str],
    max_new_tokens_limit: int = Limits.max_new_tokens_limit,
    max_batch_size: int = Limits.max_batch_size,
    max_batch_tokens: int = Limits.max_batch_tokens,
    queue_size: int = Limits.queue_size,
    request_timeout: float = Limits.request_timeout,
    max_body_bytes: int = Limits.max_body_bytes,
    max_prompt_chars: int = Limits.max_prompt_chars,
    max_patterns: int = Limits.max_patterns,
    max_pattern_chars: int = Limits.max_pattern_chars,
    compile_timeout: float = Limits.compile_timeout,
    batch_window: float = Limits.batch_window,
    compile_workers: int = 2,
    model_name: str = "",
    request_class: type | None = None,
    engine_class: type | None = None,
) -> Starlette:
    """Build the HTTP service around ``generator``.

    ``api_keys`` must hold at least one key. The limits are described in
    :class:`~regexlm.server.limits.Limits`. ``request_class`` is the request type the generator
    takes (default :class:`regexlm.generation.GenerationRequest`). ``engine_class`` decodes the
    requests (default :class:`~regexlm.server.engine.Engine`, the transformers engine;
    :class:`~regexlm.server.vllm_engine.VllmEngine` puts them on vLLM); routes see only the
    engine interface, whichever it is.
    """
    limits = Limits(
        max_new_tokens_limit=max_new_tokens_limit,
        max_batch_size=max_batch_size,
        max_batch_tokens=max_batch_tokens,
        queue_size=queue_size,
        request_timeout=request_timeout,
        max_body_bytes=max_body_bytes,
        max_prompt_chars=max_prompt_chars,
        max_patterns=max_patterns,
        max_pattern_chars=max_pattern_chars,
        compile_timeout=compile_timeout,
        batch_window=batch_window,
    )
    checker = APIKeyChecker(api_keys)
    metrics = ServiceMetrics()
    engine = (engine_class or Engine)(
        generator,
        max_batch_size=limits.max_batch_size,
        queue_size=limits.queue_size,
        metrics=metrics,
        batch_window=limits.batch_window,
        max_batch_tokens=limits.max_batch_tokens,
    )
    compiler = PatternCompiler(
        generator.compile, timeout=limits.compile_timeout, metrics=metrics, workers=compile_workers
    )
    metrics.add_gauge(
        "regexlm_requests_waiting",
        "Requests admitted and not yet decoding.",
        lambda: engine.waiting,
    )
    metrics.add_gauge(
        "regexlm_requests_running", "Requests in the batch being decoded.", lambda: engine.running
    )
    service = Service(
        limits=limits,
        engine=engine,
        compiler=compiler,
        metrics=metrics,
        request_class=request_class or _default_request_class(),
        model_name=model_name or type(generator).__name__,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine.start()
        try:
            yield
        finally:
            drained = await engine.drain(timeout=limits.request_timeout + 5.0)
            if drained:
                logger.info("engine drained: every accepted request was answered")
            else:
                logger.warning("shutting down with requests still unfinished")
            engine.close()
            compiler.shutdown()

    route_list = [
        Route(COMPLETION_PATH, routes.complete, methods=["POST"]),
        Route("/health", routes.health, methods=["GET"]),
        Route("/metrics", routes.metrics, methods=["GET"]),
    ]
    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(MetricsMiddleware, metrics=metrics, routes=[r.path for r in route_list]),
        Middleware(APIKeyMiddleware, checker=checker),
        Middleware(BodySizeLimitMiddleware, max_body_bytes=limits.max_body_bytes),
    ]
    app = Starlette(
        routes=route_list,
        middleware=middleware,
        exception_handlers={HTTPException: _http_exception, Exception: _unexpected},
        lifespan=lifespan,
    )
    # a path with a slash too many gets the JSON 404 that names the API, not an empty redirect
    app.router.redirect_slashes = False
    app.state.service = service
    return app
