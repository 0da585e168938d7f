"""The service's metrics, read back through prometheus_client's own text parser."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from regexlm import __version__
from regexlm.server.metrics import (
    _METHODS,
    LATENCY_BUCKETS,
    OTHER,
    MetricsMiddleware,
    ServiceMetrics,
)
from tests.server.scrape import families, sample, samples

label_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def test_exposition_parses_with_the_declared_types():
    metrics = ServiceMetrics()
    metrics.add_gauge("regexlm_requests_waiting", "Waiting.", lambda: 3)
    metrics.http_requests.inc(route="/health", method="GET", status="200")
    text = metrics.render()
    kinds = families(text)
    assert kinds["regexlm_build_info"] == "gauge"  # an *_info metric is a gauge, not a counter
    assert kinds["regexlm_requests_waiting"] == "gauge"
    assert kinds["regexlm_http_requests"] == "counter"  # the parser drops the _total suffix
    assert kinds["regexlm_batch_size"] == "histogram"
    assert sample(text, "regexlm_build_info", version=__version__) == 1
    assert sample(text, "regexlm_requests_waiting") == 3
    assert (
        sample(text, "regexlm_http_requests_total", route="/health", method="GET", status="200")
        == 1
    )
    assert sample(text, "regexlm_generated_tokens_total") == 0  # unlabelled: present from start
    assert text.endswith("\n")


def test_gauges_are_read_when_scraped():
    metrics = ServiceMetrics()
    level = [1]
    metrics.add_gauge("regexlm_requests_running", "Running.", lambda: level[0])
    assert sample(metrics.render(), "regexlm_requests_running") == 1
    level[0] = 7
    assert sample(metrics.render(), "regexlm_requests_running") == 7


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.floats(min_value=0, allow_nan=False, allow_infinity=True)
        | st.sampled_from([0.0, *LATENCY_BUCKETS, 5e-324, 1.7976931348623157e308]),
        max_size=30,
    )
)
def test_histogram_buckets_sum_and_count(values):
    metrics = ServiceMetrics()
    for value in values:
        metrics.batch_duration.observe(value)
    parsed = samples(metrics.render())
    name = "regexlm_batch_duration_seconds"
    for bound in (*LATENCY_BUCKETS, math.inf):
        le = "+Inf" if math.isinf(bound) else str(float(bound))
        want = sum(1 for v in values if v <= bound)
        assert parsed[(f"{name}_bucket", frozenset({("le", le)}))] == want
    assert parsed[(f"{name}_count", frozenset())] == len(values)
    total = 0.0
    for value in values:
        total += value
    assert parsed[(f"{name}_sum", frozenset())] == pytest.approx(total, rel=1e-12)
    assert metrics.batch_duration.value() == len(values)


@settings(max_examples=40, deadline=None)
@given(st.lists(label_text, min_size=1, max_size=5))
def test_label_values_survive_escaping(kinds):
    metrics = ServiceMetrics()
    for kind in kinds:
        metrics.compile_errors.inc(kind=kind)
    text = metrics.render()
    for kind in set(kinds):
        assert sample(text, "regexlm_compile_errors_total", kind=kind) == kinds.count(kind)
        assert metrics.compile_errors.value(kind=kind) == kinds.count(kind)


def test_wrong_labels_and_negative_increments_are_refused():
    metrics = ServiceMetrics()
    with pytest.raises(ValueError):
        metrics.completions.inc(reason="x")
    with pytest.raises(ValueError):
        metrics.completions.inc()  # the label is required
    with pytest.raises(ValueError):
        metrics.generated_tokens.inc(-1)


def test_concurrent_updates_are_not_lost():
    metrics = ServiceMetrics()

    def bump():
        for _ in range(5_000):
            metrics.generated_tokens.inc()
            metrics.batch_size.observe(2)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert metrics.generated_tokens.value() == 20_000
    assert sample(metrics.render(), "regexlm_batch_size_bucket", le="2.0") == 20_000


def test_apps_in_one_process_keep_separate_registries():
    first, second = ServiceMetrics(), ServiceMetrics()  # the global registry would refuse this
    first.cancelled.inc(reason="timeout")
    assert first.cancelled.value(reason="timeout") == 1
    assert second.cancelled.value(reason="timeout") == 0
    assert (
        REGISTRY.get_sample_value("regexlm_cancelled_requests_total", {"reason": "timeout"}) is None
    )


async def _answer(scope, receive, send):
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _request(middleware, method: str, path: str) -> None:
    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    asyncio.run(middleware(scope, receive, send))


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(_METHODS)) | st.text(max_size=12),
            st.sampled_from(["/health", "/metrics"]) | st.text(max_size=60).map(lambda s: "/" + s),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_hostile_paths_and_methods_collapse_into_one_label(requests):
    metrics = ServiceMetrics()
    routes = {"/health", "/metrics"}
    middleware = MetricsMiddleware(_answer, metrics, routes)
    for method, path in requests:
        _request(middleware, method, path)
    routes_seen = set()
    parsed = samples(metrics.render())
    total = 0.0
    for (name, labels), value in parsed.items():
        if name == "regexlm_http_requests_total":
            label = dict(labels)
            routes_seen.add(label["route"])
            assert label["method"] in _METHODS | {OTHER} and label["status"] == "204"
            total += value
    assert routes_seen <= routes | {OTHER}
    assert total == len(requests)
