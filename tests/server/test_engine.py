"""Engine mechanics, with a scripted generator so timing is under the test's control.

Batching of concurrent requests, the bounded queue (503), timeouts (504), a client leaving,
graceful draining, the compile cache and its time limit, and failures kept to their request.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from starlette.testclient import TestClient

from regexlm.errors import PatternTooComplexError
from regexlm.server import create_app
from tests.server.conftest import API_KEY, AUTH
from tests.server.fake_generator import ScriptedGenerator
from tests.server.scrape import sample

URL = "/v1/completion/regex"


def make_app(generator, **limits):
    return create_app(generator, api_keys=[API_KEY], **limits)


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def test_requests_arriving_during_a_batch_join_the_next_one():
    fake = ScriptedGenerator()
    fake.gate.clear()
    with TestClient(make_app(fake, max_batch_size=4)) as client, ThreadPoolExecutor(8) as pool:
        first = pool.submit(
            client.post, URL, json={"prompt": "first", "pattern": "x{2}"}, headers=AUTH
        )
        wait_until(fake.started.is_set)
        app = client.app
        others = [
            pool.submit(
                client.post,
                URL,
                headers=AUTH,
                json={
                    "prompt": f"p{i}",
                    "pattern": "x+",
                    "max_new_tokens": i + 1,
                    "stop_after_match": False,
                },
            )
            for i in range(6)
        ]
        wait_until(lambda: app.state.service.engine.queue_depth == 6)
        fake.gate.set()
        assert first.result().json()["completion"] == "xx"
        results = [f.result() for f in others]
    assert [len(batch) for batch in fake.batches] == [1, 4, 2]
    # Each request kept its own parameters inside the shared batch.
    for i, response in enumerate(results):
        assert response.status_code == 200
        body = response.json()
        assert body["completion"] == "x" * (i + 1) and body["stop_reason"] == "token_limit"
    assert sorted(r.max_new_tokens for batch in fake.batches[1:] for r in batch) == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]


def test_full_queue_answers_503_with_retry_after():
    fake = ScriptedGenerator()
    fake.gate.clear()
    with (
        TestClient(make_app(fake, queue_size=2, max_batch_size=1)) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        engine = client.app.state.service.engine
        running = pool.submit(client.post, URL, json={"prompt": "a", "pattern": "x"}, headers=AUTH)
        wait_until(fake.started.is_set)
        waiting = [
            pool.submit(client.post, URL, json={"prompt": "b", "pattern": "x"}, headers=AUTH)
            for _ in range(2)
        ]
        wait_until(lambda: engine.queue_depth == 2)
        response = client.post(URL, json={"prompt": "c", "pattern": "x"}, headers=AUTH)
        assert response.status_code == 503
        assert response.json()["code"] == 503 and "queue is full" in response.json()["error"]
        assert response.headers["retry-after"] == "1"
        fake.gate.set()
        assert running.result().status_code == 200
        assert all(f.result().status_code == 200 for f in waiting)
        # Room again.
        assert (
            client.post(URL, json={"prompt": "c", "pattern": "x"}, headers=AUTH).status_code == 200
        )


def test_timeout_answers_504_and_stops_the_row():
    fake = ScriptedGenerator(step_delay=0.05)
    with TestClient(make_app(fake, request_timeout=0.3, max_new_tokens_limit=200)) as client:
        started = time.monotonic()
        response = client.post(
            URL,
            headers=AUTH,
            json={"prompt": "a", "pattern": "x+", "max_new_tokens": 200, "stop_after_match": False},
        )
        assert time.monotonic() - started < 2.0
        assert response.status_code == 504 and response.json()["code"] == 504
        wait_until(lambda: fake.stopped_rows == [(0, 0)])
        metrics = client.get("/metrics").text
        assert sample(metrics, "regexlm_cancelled_requests_total", reason="timeout") == 1


def test_timeout_while_waiting_in_the_queue():
    fake = ScriptedGenerator()
    fake.gate.clear()
    with (
        TestClient(make_app(fake, request_timeout=0.3, max_batch_size=1)) as client,
        ThreadPoolExecutor(2) as pool,
    ):
        engine = client.app.state.service.engine
        blocker = pool.submit(client.post, URL, json={"prompt": "a", "pattern": "x"}, headers=AUTH)
        wait_until(fake.started.is_set)
        response = client.post(URL, json={"prompt": "b", "pattern": "x"}, headers=AUTH)
        assert response.status_code == 504
        assert engine.queue_depth == 0 and engine.waiting == 0  # it left the queue at once
        fake.gate.set()
        assert blocker.result().status_code == 504  # it outlived its own deadline at the gate
    assert len(fake.batches) == 1


def asgi_request(app, body: bytes, disconnect_after: float):
    """Drive the app as a server would, with a client that hangs up after a while."""
    sent = []

    async def run():
        delivered = False

        async def receive():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(disconnect_after)
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": URL,
            "raw_path": URL.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"authorization", f"Bearer {API_KEY}".encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 5555),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)

    return run, sent


@pytest.mark.parametrize("stream", [False, True])
def test_client_disconnect_cancels_its_work(stream):
    fake = ScriptedGenerator(step_delay=0.02)
    app = make_app(fake, max_new_tokens_limit=1000)
    body = json.dumps(
        {
            "prompt": "a",
            "pattern": "x+",
            "max_new_tokens": 1000,
            "stop_after_match": False,
            "stream": stream,
        }
    ).encode()
    run, sent = asgi_request(app, body, disconnect_after=0.2)

    async def main():
        started = time.monotonic()
        await run()
        return time.monotonic() - started

    elapsed = asyncio.run(main())
    assert elapsed < 3.0  # 1000 steps would take 20 s
    wait_until(lambda: fake.stopped_rows == [(0, 0)])
    metrics = app.state.service.metrics
    assert metrics.cancelled.value(reason="disconnect") == 1
    assert metrics.http_requests.value(route=URL, method="POST", status="499") == 1
    if stream:
        chunks = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        assert chunks.count(b"event: token") >= 1  # it was streaming until the client left


def test_shutdown_finishes_requests_in_flight():
    # In one event loop, as a server runs it (a TestClient would stop its event loop thread
    # while the answer is still on its way to the client's thread).
    fake = ScriptedGenerator()
    fake.gate.clear()
    app = make_app(fake)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            lifespan = app.router.lifespan_context(app)
            await lifespan.__aenter__()
            in_flight = asyncio.create_task(
                client.post(URL, json={"prompt": "a", "pattern": "x{3}"}, headers=AUTH)
            )
            deadline = time.monotonic() + 10.0
            while not fake.started.is_set():
                assert time.monotonic() < deadline, "the request never started"
                await asyncio.sleep(0.005)
            closing = asyncio.create_task(lifespan.__aexit__(None, None, None))
            await asyncio.sleep(0.3)
            assert not closing.done()  # the lifespan waits for the engine to drain
            fake.gate.set()
            response = await asyncio.wait_for(in_flight, 10)
            await asyncio.wait_for(closing, 10)
            return response

    response = asyncio.run(scenario())
    assert response.status_code == 200 and response.json()["completion"] == "xxx"


def test_compilation_is_shared_and_cached():
    fake = ScriptedGenerator(compile_delay=0.3)
    with TestClient(make_app(fake)) as client, ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(client.post, URL, json={"prompt": str(i), "pattern": "x{2}"}, headers=AUTH)
            for i in range(8)
        ]
        assert all(f.result().status_code == 200 for f in futures)
        assert (
            client.post(URL, json={"prompt": "z", "pattern": "x{2}"}, headers=AUTH).status_code
            == 200
        )
        metrics = client.app.state.service.metrics
    assert fake.compiled == ["x{2}"]
    assert metrics.compile_cache_misses.value() == 1
    assert metrics.compile_cache_hits.value() == 8


def test_refused_patterns_are_remembered():
    fake = ScriptedGenerator()
    with TestClient(make_app(fake)) as client:
        for _ in range(3):
            response = client.post(
                URL, json={"prompt": "a", "pattern": ["x", "a(?=b)"]}, headers=AUTH
            )
            assert response.status_code == 400
            assert (
                "pattern[1] uses an unsupported construct at position 1: lookahead"
                in response.json()["error"]
            )
    assert fake.compiled == [["x", "a(?=b)"]]


def test_the_cache_of_refusals_is_bounded():
    fake = ScriptedGenerator()
    with TestClient(make_app(fake)) as client:
        compiler = client.app.state.service.compiler
        compiler.max_failure_chars = 100  # room for two of these 45-character patterns
        patterns = [f"(?={c * 40})" for c in "abc"]
        for pattern in patterns + patterns[2:] + patterns[:1]:
            response = client.post(URL, json={"prompt": "a", "pattern": pattern}, headers=AUTH)
            assert response.status_code == 400 and "lookahead" in response.json()["error"]
    # The oldest refusal made room for the third; asked again, it was compiled again.
    assert [fake.compiled.count(p) for p in patterns] == [2, 1, 1]


def test_a_pattern_whose_rows_failed_is_refused_from_then_on():
    fake = ScriptedGenerator()
    body = {"prompt": "a", "pattern": "x+", "max_new_tokens": 2}
    with TestClient(make_app(fake)) as client:
        assert client.post(URL, json=body, headers=AUTH).status_code == 200
        fake.indexes[0].failure = PatternTooComplexError(
            "building the token rows of one decoding step took longer than the time limit",
            limit="timeout",
        )
        for _ in range(2):  # the live index, then the remembered refusal
            response = client.post(URL, json=body, headers=AUTH)
            assert response.status_code == 400
            assert "too complex" in response.json()["error"]
            assert "token rows" in response.json()["error"]
    assert len(fake.batches) == 1 and fake.compiled == ["x+"]


def test_compile_time_limit():
    fake = ScriptedGenerator(compile_delay=1.0)
    with TestClient(make_app(fake, compile_timeout=0.2)) as client:
        for _ in range(2):
            started = time.monotonic()
            response = client.post(URL, json={"prompt": "a", "pattern": "slow+"}, headers=AUTH)
            assert time.monotonic() - started < 0.8
            assert response.status_code == 400
            assert "too complex" in response.json()["error"] and "0.2 s" in response.json()["error"]
        time.sleep(1.0)  # the abandoned compilation finishes; the answer does not change
        assert (
            client.post(URL, json={"prompt": "a", "pattern": "slow+"}, headers=AUTH).status_code
            == 400
        )
    assert fake.compiled == ["slow+"]


def test_waiting_for_a_compile_thread_does_not_count_as_complexity():
    # One thread, four patterns of 0.3 s each: the last waits 0.9 s for the thread, yet its own
    # compilation takes well under the 1 s limit.
    fake = ScriptedGenerator(compile_delay=0.3)
    app = make_app(fake, compile_timeout=1.0, compile_workers=1)
    with TestClient(app) as client, ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(
                client.post, URL, json={"prompt": "a", "pattern": f"x{{{i}}}"}, headers=AUTH
            )
            for i in (1, 2, 3, 4)
        ]
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200, 200, 200, 200]
    assert sorted(fake.compiled) == ["x{1}", "x{2}", "x{3}", "x{4}"]


def test_a_failing_request_does_not_take_its_batch_down(caplog):
    fake = ScriptedGenerator()
    fake.gate.clear()
    fake.fail_prompt = "boom"
    with TestClient(make_app(fake, max_batch_size=8)) as client, ThreadPoolExecutor(6) as pool:
        engine = client.app.state.service.engine
        blocker = pool.submit(client.post, URL, json={"prompt": "a", "pattern": "x"}, headers=AUTH)
        wait_until(fake.started.is_set)
        prompts = ["ok1", "boom", "ok2", "ok3"]
        futures = [
            pool.submit(client.post, URL, json={"prompt": p, "pattern": "x"}, headers=AUTH)
            for p in prompts
        ]
        wait_until(lambda: engine.queue_depth == 4)
        fake.gate.set()
        assert blocker.result().status_code == 200
        responses = dict(zip(prompts, (f.result() for f in futures), strict=True))
    assert [responses[p].status_code for p in prompts] == [200, 500, 200, 200]
    error = responses["boom"].json()
    assert error["code"] == 500 and "scripted failure" not in error["error"]
    assert "request id" in error["error"]
    assert "scripted failure" in caplog.text  # the log has the details
    # The others finished in the same batch: no batch was run again, row by row.
    assert [len(batch) for batch in fake.batches] == [1, 4]
    assert [responses[p].json()["completion"] for p in ("ok1", "ok2", "ok3")] == ["x"] * 3


def test_a_failing_batch_fails_each_of_its_requests_once():
    fake = ScriptedGenerator()
    fake.fail_with = RuntimeError("the model failed")
    with TestClient(make_app(fake)) as client:
        response = client.post(URL, json={"prompt": "a", "pattern": "x"}, headers=AUTH)
        assert response.status_code == 500 and "request id" in response.json()["error"]
        fake.fail_with = None
        assert (
            client.post(URL, json={"prompt": "a", "pattern": "x"}, headers=AUTH).status_code == 200
        )
    assert len(fake.batches) == 2


def test_the_compiled_index_travels_with_the_request():
    fake = ScriptedGenerator()
    fake.gate.clear()
    with TestClient(make_app(fake, max_batch_size=8)) as client, ThreadPoolExecutor(4) as pool:
        engine = client.app.state.service.engine
        blocker = pool.submit(client.post, URL, json={"prompt": "a", "pattern": "x"}, headers=AUTH)
        wait_until(fake.started.is_set)
        patterns = ["x{2}", ["x", "xx"], "x{2}"]
        futures = [
            pool.submit(client.post, URL, json={"prompt": "b", "pattern": p}, headers=AUTH)
            for p in patterns
        ]
        wait_until(lambda: engine.queue_depth == 3)
        fake.gate.set()
        assert blocker.result().status_code == 200
        assert all(f.result().status_code == 200 for f in futures)
    requests, handed = fake.batches[1], fake.batch_indexes[1]
    assert [index.pattern for index in handed] == [r.pattern for r in requests]
    same = [index for index in handed if index.pattern == "x{2}"]
    assert len(same) == 2 and same[0] is same[1]  # one compilation, one index, both requests
    assert sorted(map(str, fake.compiled)) == sorted(map(str, ["x", "x{2}", ["x", "xx"]]))


def test_unexpected_exception_in_a_route_is_a_json_500(monkeypatch):
    fake = ScriptedGenerator()
    from regexlm.server import routes

    def explode(*args, **kwargs):
        raise KeyError("internal detail")

    monkeypatch.setattr(routes, "parse_completion_request", explode)
    with TestClient(make_app(fake), raise_server_exceptions=False) as client:
        response = client.post(URL, json={"prompt": "a", "pattern": "x"}, headers=AUTH)
    assert response.status_code == 500
    assert response.json()["code"] == 500 and "internal detail" not in response.text


def test_draining_server_reports_unhealthy_and_refuses_new_work():
    fake = ScriptedGenerator()
    fake.gate.clear()
    with TestClient(make_app(fake)) as client, ThreadPoolExecutor(2) as pool:
        engine = client.app.state.service.engine
        in_flight = pool.submit(
            client.post, URL, json={"prompt": "a", "pattern": "x"}, headers=AUTH
        )
        wait_until(fake.started.is_set)
        drained = client.portal.start_task_soon(engine.drain, 10)
        wait_until(lambda: engine.closing)
        assert client.get("/health").status_code == 503
        refused = client.post(URL, json={"prompt": "b", "pattern": "x"}, headers=AUTH)
        assert refused.status_code == 503 and "shutting down" in refused.json()["error"]
        fake.gate.set()
        assert in_flight.result().status_code == 200
        assert drained.result(10) is True


def test_streaming_timeouts_before_and_after_the_first_token():
    fake = ScriptedGenerator(step_delay=0.05)
    fake.gate.clear()
    with TestClient(make_app(fake, request_timeout=0.4, max_new_tokens_limit=100)) as client:
        request = {
            "prompt": "a",
            "pattern": "x+",
            "max_new_tokens": 100,
            "stop_after_match": False,
            "stream": True,
        }
        # Nothing generated yet when the time is up: a plain JSON 504.
        response = client.post(URL, json=request, headers=AUTH)
        assert response.status_code == 504 and response.json()["code"] == 504
        assert "time limit of 0.4 s" in response.json()["error"]  # as without streaming
        fake.gate.set()
        # Tokens already streamed: the stream ends with an error event.
        response = client.post(URL, json=request, headers=AUTH)
        assert response.status_code == 200
        events = [block.split("\n") for block in response.text.split("\n\n") if block]
        assert events[0][0] == "event: token" and events[-1][0] == "event: error"
        error = json.loads(events[-1][1][6:])
        assert error["code"] == 504 and "time limit of 0.4 s" in error["error"]


def test_requests_admitted_before_a_drain_are_still_served():
    fake = ScriptedGenerator(compile_delay=0.4)
    with TestClient(make_app(fake)) as client, ThreadPoolExecutor(2) as pool:
        engine = client.app.state.service.engine
        compiling = pool.submit(
            client.post, URL, json={"prompt": "a", "pattern": "x{2}"}, headers=AUTH
        )
        wait_until(lambda: engine.waiting == 1)
        drained = client.portal.start_task_soon(engine.drain, 10)
        wait_until(lambda: engine.closing)
        response = compiling.result(10)
        assert response.status_code == 200 and response.json()["completion"] == "xx"
        assert drained.result(10) is True


def test_clients_of_the_last_batch_are_waited_for():
    fake = ScriptedGenerator(step_delay=0.1)  # ten steps: a batch takes about a second
    fake.gate.clear()
    with TestClient(make_app(fake, max_batch_size=8)) as client, ThreadPoolExecutor(5) as pool:
        engine = client.app.state.service.engine

        def send(delay):
            time.sleep(delay)
            return client.post(
                URL, json={"prompt": "a", "pattern": "x{10}", "max_new_tokens": 10}, headers=AUTH
            )

        blocker = pool.submit(send, 0)
        wait_until(fake.started.is_set)
        first = [pool.submit(send, 0) for _ in range(4)]
        wait_until(lambda: engine.queue_depth == 4)
        fake.gate.set()
        assert blocker.result().status_code == 200
        assert all(f.result().status_code == 200 for f in first)
        # The same four clients come back spread over 60 ms, longer than the fixed 20 ms window
        # but well within a tenth of the last batch: they decode together.
        again = [pool.submit(send, 0.02 * i) for i in range(4)]
        assert all(f.result().status_code == 200 for f in again)
    assert [len(batch) for batch in fake.batches] == [1, 4, 4]


class MeasuredGenerator(ScriptedGenerator):
    """A scripted generator whose prompts are one token a word."""

    def encode_prompt(self, prompt):
        return list(range(len(prompt.split())))


def _batches_after_a_held_one(prompts, max_batch_tokens):
    """The prompts of each batch decoded when ``prompts`` are queued, in order, behind a batch
    held until they all wait; every request answered 200."""
    fake = MeasuredGenerator()
    fake.gate.clear()
    limits = dict(max_batch_size=8, max_batch_tokens=max_batch_tokens)
    with TestClient(make_app(fake, **limits)) as client, ThreadPoolExecutor(9) as pool:

        def send(prompt):
            return pool.submit(
                client.post, URL, json={"prompt": prompt, "pattern": "x"}, headers=AUTH
            )

        first = send("first")
        wait_until(fake.started.is_set)
        engine = client.app.state.service.engine
        others = []
        for prompt in prompts:
            others.append(send(prompt))
            queued = len(others)
            wait_until(lambda queued=queued: engine.queue_depth == queued)
        fake.gate.set()
        assert all(f.result().status_code == 200 for f in [first, *others])
    return [[r.prompt for r in batch] for batch in fake.batches[1:]]


def test_a_batch_holds_at_most_max_batch_tokens_of_padded_prompt_tokens():
    long, short = "w " * 60, "hi"  # 60 tokens, 1 token
    order = [long, short, short, short, long, long, short, short]
    batches = _batches_after_a_held_one(order, max_batch_tokens=130)
    # in order; each batch's rows x its longest prompt within 130 tokens
    assert batches == [[long, short], [short, short], [long, long], [short, short]]
    for batch in batches:
        assert len(batch) * max(len(p.split()) for p in batch) <= 130


def test_a_prompt_longer_than_max_batch_tokens_is_decoded_alone():
    batches = _batches_after_a_held_one(["w " * 20, "a b", "c d"], max_batch_tokens=10)
    assert [len(batch) for batch in batches] == [1, 2]
