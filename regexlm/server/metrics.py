"""Prometheus metrics, written out by hand in the text exposition format (version 0.0.4).

Three kinds are enough here: a :class:`Counter` (monotonic), a :class:`Gauge` (read from a
callback when scraped) and a :class:`Histogram` (cumulative ``le`` buckets, ``_sum`` and
``_count``). Each metric may have labels; a child per label combination is created on first use.
Updates come from the event loop and from the engine's worker thread, so each metric guards its
values with a lock; a scrape takes a consistent snapshot of each metric in turn.

:class:`ServiceMetrics` declares everything the service reports, and :class:`MetricsMiddleware`
counts every HTTP answer by route and status and times it. Routes are reported by their template,
and any unknown path as ``other``, so clients cannot grow the label set.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regexlm import __version__

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
TOKEN_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


class _Metric(ABC):
    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()):
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {sorted(labels)}")
        return tuple(str(labels[name]) for name in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.documentation}", f"# TYPE {self.name} {self.kind}"]

    @abstractmethod
    def render(self) -> list[str]:
        """The metric's sample lines in the Prometheus text format."""


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()):
        super().__init__(name, documentation, labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        if not self.labelnames:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [
            f"{self.name}{_format_labels(self.labelnames, key)} {_number(v)}" for key, v in items
        ]


class Gauge(_Metric):
    """A value read from ``function`` at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, documentation: str, function: Callable[[], float]):
        super().__init__(name, documentation)
        self.function = function

    def render(self) -> list[str]:
        return self.header() + [f"{self.name} {_number(float(self.function()))}"]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Iterable[float],
        labelnames: Sequence[str] = (),
    ):
        super().__init__(name, documentation, labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets))
        # per label key: (per-bucket counts (non-cumulative, +Inf last), sum)
        self._data: dict[tuple[str, ...], tuple[list[int], float]] = {}
        if not self.labelnames:
            self._data[()] = ([0] * (len(self.buckets) + 1), 0.0)

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        slot = len(self.buckets)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                slot = i
                break
        with self._lock:
            counts, total = self._data.get(key) or ([0] * (len(self.buckets) + 1), 0.0)
            counts[slot] += 1
            self._data[key] = (counts, total + value)

    def snapshot(self, **labels: str) -> tuple[list[int], float]:
        """(non-cumulative counts per bucket with +Inf last, sum) for one label set."""
        with self._lock:
            counts, total = self._data.get(self._key(labels)) or (
                [0] * (len(self.buckets) + 1),
                0.0,
            )
            return list(counts), total

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(
                (key, (list(counts), total)) for key, (counts, total) in self._data.items()
            )
        lines = self.header()
        for key, (counts, total) in items:
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                le = 'le="' + _number(bound) + '"'
                lines.append(
                    f"{self.name}_bucket{_format_labels(self.labelnames, key, le)} {running}"
                )
            labels = _format_labels(self.labelnames, key)
            lines.append(f"{self.name}_sum{labels} {_number(total)}")
            lines.append(f"{self.name}_count{labels} {running}")
        return lines


class ServiceMetrics:
    """Every metric the service exposes, registered in the order they are written out."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []
        add = self._add
        self.build_info = add(
            Counter("regexlm_build_info", "Version of the running service.", ["version"])
        )
        self.build_info.inc(version=__version__)
        self.http_requests = add(
            Counter(
                "regexlm_http_requests_total",
                "HTTP requests answered, by route, method and status.",
                ["route", "method", "status"],
            )
        )
        self.http_latency = add(
            Histogram(
                "regexlm_http_request_duration_seconds",
                "Time from request to the end of its answer.",
                LATENCY_BUCKETS,
                ["route"],
            )
        )
        self.completions = add(
            Counter(
                "regexlm_completions_total",
                "Completions returned, by stop reason.",
                ["stop_reason"],
            )
        )
        self.generated_tokens = add(
            Counter("regexlm_generated_tokens_total", "Tokens generated for returned completions.")
        )
        self.tokens_per_request = add(
            Histogram("regexlm_generated_tokens", "Tokens generated per completion.", TOKEN_BUCKETS)
        )
        self.batch_size = add(
            Histogram(
                "regexlm_batch_size", "Requests decoded together in one batch.", BATCH_BUCKETS
            )
        )
        self.batch_duration = add(
            Histogram(
                "regexlm_batch_duration_seconds", "Time to decode one batch.", LATENCY_BUCKETS
            )
        )
        self.queue_wait = add(
            Histogram(
                "regexlm_queue_wait_seconds",
                "Time a request waited for its batch to start.",
                LATENCY_BUCKETS,
            )
        )
        self.compile_cache_hits = add(
            Counter(
                "regexlm_compile_cache_hits_total", "Pattern compilations answered from the cache."
            )
        )
        self.compile_cache_misses = add(
            Counter("regexlm_compile_cache_misses_total", "Pattern compilations that had to run.")
        )
        self.compile_duration = add(
            Histogram(
                "regexlm_compile_duration_seconds",
                "Time to compile a pattern that was not cached.",
                LATENCY_BUCKETS,
            )
        )
        self.compile_errors = add(
            Counter("regexlm_compile_errors_total", "Patterns refused, by kind of error.", ["kind"])
        )
        self.cancelled = add(
            Counter(
                "regexlm_cancelled_requests_total",
                "Requests dropped before finishing, by reason.",
                ["reason"],
            )
        )

    def _add(self, metric):
        self._metrics.append(metric)
        return metric

    def add_gauge(self, name: str, documentation: str, function: Callable[[], float]) -> Gauge:
        return self._add(Gauge(name, documentation, function))

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Count and time every HTTP answer by route template, method and status."""

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
        route = scope["path"] if scope["path"] in self.routes else "other"
        method = scope["method"] if scope["method"] in _METHODS else "other"

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
