"""The vLLM engine's mechanics behind the same routes, with a scripted async model (no vLLM).

Requests start as soon as fewer than ``max_batch_size`` run (no batch boundaries), the queue is
bounded (503), a timeout (504) or a client leaving cancels the running request, errors stay with
their request (400 for the request's own, 500 for a failure), streaming reports every token, and
shutdown lets running requests finish before the model is shut down.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from starlette.testclient import TestClient

from regexlm.generation import Completion
from regexlm.server import create_app
from regexlm.server.vllm_engine import VllmEngine
from tests.server.conftest import API_KEY, AUTH

URL = "/v1/completion/regex"


class ScriptedModel:
    """Stands in for :class:`regexlm.vllm.engine.VllmModel`: one "x" a step, every request at
    once (as vLLM's continuous batching runs them), held at ``gate`` while it is closed."""

    def __init__(self, step: float = 0.002):
        self.step = step
        self.gate = threading.Event()
        self.gate.set()
        self.started = self.stopped = False
        self.running = 0
        self.most_running = 0
        self.cancelled = 0
        self.seen: list = []
        self.fail_with: BaseException | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self.started = True

    def shutdown(self) -> None:
        self.stopped = True

    def compile(self, pattern):
        return ("index", pattern)

    async def generate(self, request, on_token=None, index=None):
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.seen.append((request, index))
        try:
            if self.fail_with is not None:
                raise self.fail_with
            text = ""
            for _ in range(request.max_new_tokens):
                while not self.gate.is_set():
                    await asyncio.sleep(0.002)
                await asyncio.sleep(self.step)
                text += "x"
                if on_token is not None:
                    on_token(120, "x")
            return Completion(
                completion=text,
                tokens_generated=len(text),
                stop_reason="token_limit",
                matched=True,
                pattern_index=0,
                token_ids=[120] * len(text),
                timings={"compile_s": 0.0, "prefill_s": 0.0, "decode_s": 0.0},
            )
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            with self._lock:
                self.running -= 1


def make_app(model, **limits):
    return create_app(model, api_keys=[API_KEY], engine_class=VllmEngine, **limits)


def body(n: int = 3, **extra):
    return {"prompt": "p", "pattern": "x+", "max_new_tokens": n, "stop_after_match": False, **extra}


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def test_requests_run_together_up_to_the_batch_size_and_the_rest_start_as_room_frees():
    model = ScriptedModel()
    model.gate.clear()
    with TestClient(make_app(model, max_batch_size=3)) as client, ThreadPoolExecutor(8) as pool:
        assert model.started
        futures = [pool.submit(client.post, URL, json=body(i + 1), headers=AUTH) for i in range(7)]
        engine = client.app.state.service.engine
        wait_until(lambda: model.running == 3 and engine.waiting == 4)
        health = client.get("/health").json()
        assert health["running"] == 3 and health["waiting"] == 4 and health["max_batch_size"] == 3
        model.gate.set()
        responses = [f.result() for f in futures]
    assert model.stopped
    assert model.most_running == 3
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        assert response.json()["completion"] == "x" * (i + 1)
    # Each request went with the index the front compiled for it.
    assert all(index == ("index", "x+") for _, index in model.seen)


def test_a_full_queue_is_a_503():
    model = ScriptedModel()
    model.gate.clear()
    with (
        TestClient(make_app(model, max_batch_size=1, queue_size=2)) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        running = pool.submit(client.post, URL, json=body(), headers=AUTH)
        wait_until(lambda: model.running == 1)
        waiting = [pool.submit(client.post, URL, json=body(), headers=AUTH) for _ in range(2)]
        engine = client.app.state.service.engine
        wait_until(lambda: engine.waiting == 2)
        refused = client.post(URL, json=body(), headers=AUTH)
        assert refused.status_code == 503 and "queue is full" in refused.json()["error"]
        assert refused.headers["retry-after"]
        model.gate.set()
        assert [f.result().status_code for f in [running, *waiting]] == [200, 200, 200]


def test_a_timeout_cancels_the_running_request():
    model = ScriptedModel()
    model.gate.clear()
    with TestClient(make_app(model, request_timeout=0.5)) as client:
        response = client.post(URL, json=body(), headers=AUTH)
        assert response.status_code == 504
        wait_until(lambda: model.cancelled == 1 and model.running == 0)
        assert client.app.state.service.engine.running == 0
        model.gate.set()


def test_errors_stay_with_their_request():
    model = ScriptedModel()
    with TestClient(make_app(model)) as client:
        model.fail_with = ValueError("prompt is too long: 9000 tokens")
        response = client.post(URL, json=body(), headers=AUTH)
        assert response.status_code == 400
        assert "prompt is too long" in response.json()["error"]
        model.fail_with = RuntimeError("the engine died")
        response = client.post(URL, json=body(), headers=AUTH)
        assert response.status_code == 500
        model.fail_with = None
        assert client.post(URL, json=body(), headers=AUTH).status_code == 200


def test_streaming_reports_every_token_then_the_answer():
    model = ScriptedModel()
    with TestClient(make_app(model)) as client:
        with client.stream("POST", URL, json=body(4, stream=True), headers=AUTH) as response:
            assert response.status_code == 200
            events = [
                json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")
            ]
    assert [e.get("text") for e in events[:-1]] == ["x"] * 4
    assert events[-1]["completion"] == "xxxx" and events[-1]["tokens_generated"] == 4


def test_shutdown_lets_running_requests_finish_then_stops_the_model():
    # In one event loop, as a server runs it: the request is in flight when the lifespan's
    # shutdown starts, and is answered before the model stops. (A TestClient would stop its
    # event loop thread while the answer is still on its way to the client's thread.)
    model = ScriptedModel(step=0.05)
    app = make_app(model)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            async with app.router.lifespan_context(app):
                pending = asyncio.create_task(client.post(URL, json=body(10), headers=AUTH))
                deadline = time.monotonic() + 10.0
                while model.running != 1:
                    assert time.monotonic() < deadline, "the request never started"
                    await asyncio.sleep(0.005)
                assert not pending.done()
            # leaving the lifespan ran the shutdown: drained, then closed
            assert model.stopped
            return await pending

    response = asyncio.run(scenario())
    assert response.status_code == 200
    assert response.json()["completion"] == "x" * 10
