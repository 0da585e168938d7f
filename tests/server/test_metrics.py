"""The hand-written Prometheus exposition."""

from __future__ import annotations

import re
import threading

from regexlm.server.metrics import Counter, Histogram, ServiceMetrics


def test_counter_with_labels_and_escaping():
    counter = Counter("things_total", "Things.", ["kind"])
    counter.inc(kind='a"b\\c\nd')
    counter.inc(2, kind="plain")
    text = "\n".join(counter.render())
    assert "# TYPE things_total counter" in text
    assert 'things_total{kind="a\\"b\\\\c\\nd"} 1' in text
    assert 'things_total{kind="plain"} 2' in text


def test_histogram_buckets_are_cumulative():
    histogram = Histogram("size", "Sizes.", [1, 2, 4])
    for value in [1, 1, 3, 10]:
        histogram.observe(value)
    lines = histogram.render()
    assert 'size_bucket{le="1"} 2' in lines
    assert 'size_bucket{le="2"} 2' in lines
    assert 'size_bucket{le="4"} 3' in lines
    assert 'size_bucket{le="+Inf"} 4' in lines
    assert "size_sum 15" in lines and "size_count 4" in lines


def test_concurrent_updates_are_not_lost():
    counter = Counter("n_total", "N.")

    def bump():
        for _ in range(10_000):
            counter.inc()

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.value() == 40_000


def test_service_exposition_is_well_formed():
    metrics = ServiceMetrics()
    metrics.add_gauge("regexlm_requests_waiting", "Waiting.", lambda: 3)
    metrics.batch_size.observe(4)
    metrics.http_requests.inc(route="/health", method="GET", status="200")
    text = metrics.render()
    sample = re.compile(
        r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]+="([^"\\]|\\.)*",?)*\})? [-+0-9.eInf]+$'
    )
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert "regexlm_requests_waiting 3" in text
    assert 'regexlm_batch_size_bucket{le="4"} 1' in text
    assert text.endswith("\n")
