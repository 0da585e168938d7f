"""Prometheus metrics of the service, kept with ``prometheus_client`` in a registry per app.

Every app built by :func:`regexlm.server.create_app` owns one :class:`ServiceMetrics`, and that
owns its own ``CollectorRegistry``: several apps in one process (tests, or two models served side
by side) keep separate counts and never clash over a name in the library's global registry.
``/metrics`` writes that registry in the Prometheus text format (version 0.0.4) with
``prometheus_client.generate_latest``; the library does the locking, the cumulative histogram
buckets, the escaping and the ``_total`` / ``_created`` / ``_bucket`` naming.

The metrics follow the library's conventions: counters end in ``_total``, a value read when
scraped is a gauge, and ``regexlm_build_info`` is a gauge fixed at 1 whose ``version`` label
carries the information. Updates come from the event loop, the engine's worker thread and the
compile threads; they call :meth:`Family.inc` / :meth:`Family.observe` with labels as keywords,
the one call style the rest of the service uses.

Labels stay bounded whatever clients send: :class:`MetricsMiddleware` reports a request by its
route when the path is one of the app's routes and as ``other`` otherwise, and an unknown method
as ``other``, so a client probing random paths cannot grow the label set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regexlm import __version__

# What generate_latest writes (the classic text format); every Prometheus version reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


class Family:
    """A counter or histogram, updated with its labels as keywords.

    ``counter.inc(route="/health", method="GET", status="200")`` is
    ``metric.labels(route=..., ...).inc()``; a metric without labels takes none. Wrong or missing
    label names raise ``ValueError`` (from ``prometheus_client``).
    """

    def __init__(self, metric: Counter | Histogram, registry: CollectorRegistry, sample: str):
        self.metric = metric
        self._registry = registry
        self._sample = sample  # the sample that holds the value: name_total, or name_count

    def _child(self, labels: dict[str, str]):
        return self.metric.labels(**labels) if labels else self.metric

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` (>= 0) to a counter."""
        self._child(labels).inc(amount)

    def observe(self, value: float, **labels: str) -> None:
        """Record one observation in a histogram."""
        self._child(labels).observe(value)

    def value(self, **labels: str) -> float:
        """A counter's total, or a histogram's number of observations (0 before the first)."""
        found = self._registry.get_sample_value(
            self._sample, {k: str(v) for k, v in labels.items()}
        )
        return 0.0 if found is None else found


class ServiceMetrics:
    """Every metric the service exposes, in one registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.build_info = Gauge(
            "regexlm_build_info",
            "Version of the running service (always 1; the version is a label).",
            ["version"],
            registry=self.registry,
        )
        self.build_info.labels(version=__version__).set(1)
        self.http_requests = self._counter(
            "regexlm_http_requests_total",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
        )
        self.http_latency = self._histogram(
            "regexlm_http_request_duration_seconds",
            "Time from request to the end of its answer.",
            LATENCY_BUCKETS,
            ["route"],
        )
        self.completions = self._counter(
            "regexlm_completions_total", "Completions returned, by stop reason.", ["stop_reason"]
        )
        self.generated_tokens = self._counter(
            "regexlm_generated_tokens_total", "Tokens generated for returned completions."
        )
        self.tokens_per_request = self._histogram(
            "regexlm_completion_tokens", "Tokens generated per completion.", TOKEN_BUCKETS
        )
        self.batch_size = self._histogram(
            "regexlm_batch_size", "Requests decoded together in one batch.", BATCH_BUCKETS
        )
        self.batch_duration = self._histogram(
            "regexlm_batch_duration_seconds", "Time to decode one batch.", LATENCY_BUCKETS
        )
        self.queue_wait = self._histogram(
            "regexlm_queue_wait_seconds",
            "Time a request waited for its batch to start.",
            LATENCY_BUCKETS,
        )
        self.compile_cache_hits = self._counter(
            "regexlm_compile_cache_hits_total", "Pattern compilations answered from the cache."
        )
        self.compile_cache_misses = self._counter(
            "regexlm_compile_cache_misses_total", "Pattern compilations that had to run."
        )
        self.compile_duration = self._histogram(
            "regexlm_compile_duration_seconds",
            "Time to compile a pattern that was not cached.",
            LATENCY_BUCKETS,
        )
        self.compile_errors = self._counter(
            "regexlm_compile_errors_total", "Patterns refused, by kind of error.", ["kind"]
        )
        self.cancelled = self._counter(
            "regexlm_cancelled_requests_total",
            "Requests dropped before finishing, by reason.",
            ["reason"],
        )

    def _counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> Family:
        metric = Counter(name, documentation, labelnames, registry=self.registry)
        return Family(metric, self.registry, name)

    def _histogram(
        self,
        name: str,
        documentation: str,
        buckets: Iterable[float],
        labelnames: Sequence[str] = (),
    ) -> Family:
        metric = Histogram(
            name, documentation, labelnames, registry=self.registry, buckets=tuple(buckets)
        )
        return Family(metric, self.registry, f"{name}_count")

    def add_gauge(self, name: str, documentation: str, function: Callable[[], float]) -> Gauge:
        """A gauge whose value ``function()`` gives at each scrape."""
        gauge = Gauge(name, documentation, registry=self.registry)
        gauge.set_function(lambda: float(function()))
        return gauge

    def render(self) -> str:
        """The registry in the Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry).decode("utf-8")


class MetricsMiddleware:
    """Count and time every HTTP answer by route, method and status."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, routes: Iterable[str]):
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        route = scope["path"] if scope["path"] in self.routes else OTHER
        method = scope["method"] if scope["method"] in _METHODS else OTHER

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            status = scope.get("regexlm.status", status)
            self.metrics.http_requests.inc(route=route, method=method, status=str(status))
            self.metrics.http_latency.observe(time.perf_counter() - started, route=route)
