"""Black-box: regexlm over HTTP on vLLM's engine, on loopback, the default model, the CPU.

* vLLM's own OpenAI server with regexlm's processor (from the entry point): ``vllm_xargs``
  carries the pattern; a bad pattern is vLLM's 400 naming the problem.
* ``regexlm serve --engine vllm``: the seed request, 401, 400s, streaming, 32 concurrent
  clients, ``/health``, ``/metrics``, and SIGTERM letting a request in flight finish.

Each server is one class's fixture, so the two engines never run at the same time in a worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import AUTH, SEED_EXAMPLE, serve_process

URL = "/v1/completion/regex"
ENGINE_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_body(body: dict, request: dict) -> None:
    """The service's contract on one 200 body, with Python's `re` as the oracle."""
    patterns = request["pattern"] if isinstance(request["pattern"], list) else [request["pattern"]]
    matches = [i for i, p in enumerate(patterns) if re.fullmatch(p, body["completion"])]
    assert body["matched"] == bool(matches), body
    assert body["pattern_index"] == (matches[0] if matches else None), body
    if body["stop_reason"] == "pattern_match":
        assert matches, body
    else:
        assert body["stop_reason"] == "token_limit", body
        assert body["tokens_generated"] == request.get("max_new_tokens", 5), body


@pytest.fixture(scope="class")
def openai_server():
    from regexlm.vllm.engine import model_folder

    folder = model_folder(None)
    port = _free_port()
    handle, name = tempfile.mkstemp(prefix="vllm-openai-", suffix=".log")
    log = Path(name)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **ENGINE_ENV)
    with os.fdopen(handle, "wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                folder,
                "--served-model-name",
                "smollm2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--enforce-eager",
                "--max-model-len",
                "1024",
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM's server exited:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"vLLM's server did not start:\n{log.read_text()[-4000:]}")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.unlink(missing_ok=True)


class TestVllmOpenAIServer:
    def test_vllm_xargs_constrain_a_completion(self, openai_server):
        requests = [
            ({"regex": r"\d{4}-\d{2}-\d{2}"}, "The date today is ", r"\d{4}-\d{2}-\d{2}"),
            ({"regex": ["yes", "no"]}, "Is water wet? ", "yes|no"),
            (
                {"regex": r"[a-z]+( [a-z]+)*", "stop_after_match": False},
                "Say something: ",
                r"[a-z]+( [a-z]+)*",
            ),
        ]
        with httpx.Client(base_url=openai_server, timeout=120) as client:
            for xargs, prompt, pattern in requests:
                response = client.post(
                    "/v1/completions",
                    json={
                        "model": "smollm2",
                        "prompt": prompt,
                        "max_tokens": 12,
                        "temperature": 0.8,
                        "seed": 3,
                        "vllm_xargs": xargs,
                    },
                )
                assert response.status_code == 200, response.text
                choice = response.json()["choices"][0]
                assert re.fullmatch(pattern, choice["text"]) or choice["finish_reason"] == "length"
                if choice["finish_reason"] == "stop":
                    assert re.fullmatch(pattern, choice["text"]), choice
            # without vllm_xargs the processor stays out of the way
            free = client.post(
                "/v1/completions",
                json={"model": "smollm2", "prompt": "Hello", "max_tokens": 5, "temperature": 0},
            )
            assert free.status_code == 200 and free.json()["choices"][0]["text"]

    def test_a_bad_pattern_is_a_400_naming_the_problem(self, openai_server):
        response = httpx.post(
            openai_server + "/v1/completions",
            json={
                "model": "smollm2",
                "prompt": "x",
                "max_tokens": 4,
                "vllm_xargs": {"regex": "(a"},
            },
            timeout=60,
        )
        assert response.status_code == 400, response.text
        assert "position 0" in response.text and "unterminated subpattern" in response.text


@pytest.fixture(scope="class")
def regexlm_server():
    os.environ.update(ENGINE_ENV)
    with serve_process(
        "--engine",
        "vllm",
        "--enforce-eager",
        "--max-model-len",
        "1024",
        "--max-batch-size",
        "32",
        "--max-new-tokens-limit",
        "64",
        "--request-timeout",
        "120",
        startup_timeout=300,
    ) as server:
        yield server


class TestRegexlmServeOnVllm:
    def test_the_seed_request(self, regexlm_server):
        with regexlm_server.client(headers=AUTH) as client:
            response = client.post(URL, json=SEED_EXAMPLE)
        assert response.status_code == 200, response.text
        body = response.json()
        check_body(body, SEED_EXAMPLE)
        assert body["matched"]  # ".*prompt$" fits in 10 tokens
        assert set(body["timings"]) >= {"queue_s", "compile_s", "prefill_s", "decode_s"}

    def test_keys_and_errors(self, regexlm_server):
        with regexlm_server.client() as client:
            response = client.post(URL, json=SEED_EXAMPLE)
            assert response.status_code == 401
            bad_key = {"Authorization": "Bearer nope"}
            assert client.post(URL, json=SEED_EXAMPLE, headers=bad_key).status_code == 401
            cases = [
                ({"prompt": "x", "pattern": "(a"}, "position 0"),
                ({"prompt": "x", "pattern": r"(\w)\1"}, "backreference"),
                ({"prompt": "x", "pattern": r"a\bb"}, "cannot be satisfied"),
                ({"prompt": "x", "pattern": "a", "max_new_tokens": 0}, "max_new_tokens"),
                ({"prompt": "x", "pattern": "a", "temperature": -1}, "temperature"),
                ({"prompt": "word " * 1000, "pattern": "a", "max_new_tokens": 64}, "context"),
                ({"pattern": "a"}, "prompt"),
            ]
            for body, words in cases:
                response = client.post(URL, json=body, headers=AUTH)
                assert response.status_code == 400, (body, response.text)
                error = response.json()
                assert error["code"] == 400 and words in error["error"], (body, error)
            health = client.get("/health").json()
            assert health["status"] == "ok" and health["max_batch_size"] == 32
            assert "regexlm_http_requests_total" in client.get("/metrics").text

    def test_streaming(self, regexlm_server):
        request = {
            "prompt": "My phone number is ",
            "pattern": r"\d{3}-\d{4}",
            "max_new_tokens": 12,
            "stream": True,
            "seed": 7,
        }
        events = []
        with regexlm_server.client(headers=AUTH) as client:
            with client.stream("POST", URL, json=request) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                name = None
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        events.append((name, json.loads(line[6:])))
        assert [n for n, _ in events[:-1]] == ["token"] * (len(events) - 1)
        assert events[-1][0] == "completion"
        final = events[-1][1]
        check_body(final, request)
        assert final["matched"]
        assert "".join(data["text"] for _, data in events[:-1]) == final["completion"]
        assert len(events) - 1 == final["tokens_generated"]

    def test_32_concurrent_clients(self, regexlm_server):
        patterns = [
            r"\d{3}-\d{4}",
            r"[a-z]+@[a-z]+\.com",
            ["yes", "no"],
            r"[A-Z][a-z]{2,8}",
            r"(red|green|blue)( and (red|green|blue))?",
            r"\d+(\.\d{1,2})?",
            r"(?i)ok",
            r"[^\n]{3,12}",
        ]
        requests = [
            {
                "prompt": f"Example {i}: ",
                "pattern": patterns[i % len(patterns)],
                "max_new_tokens": 12,
                "temperature": [0, 0.7, 1.0, 1.3][i % 4],
                "top_k": [0, 20, 50][i % 3],
                "top_p": [1, 0.9][i % 2],
                "repetition_penalty": [1.0, 1.2][i % 2],
                "seed": i,
                "stop_after_match": i % 5 != 0,
            }
            for i in range(32)
        ]

        async def main():
            async with regexlm_server.async_client(headers=AUTH, timeout=180) as client:
                return await asyncio.gather(*(client.post(URL, json=r) for r in requests))

        for request, response in zip(requests, asyncio.run(main()), strict=True):
            assert response.status_code == 200, response.text
            body = response.json()
            check_body(body, request)
            assert body["matched"], body  # 12 tokens reach a match for every pattern here

    def test_sigterm_lets_a_request_in_flight_finish(self, regexlm_server):
        request = {
            "prompt": "Tell me a story: ",
            "pattern": r"[a-z ]+",
            "max_new_tokens": 48,
            "stop_after_match": False,
            "temperature": 0,
        }

        async def main():
            async with regexlm_server.async_client(headers=AUTH, timeout=180) as client:
                pending = asyncio.ensure_future(client.post(URL, json=request))
                await asyncio.sleep(0.3)
                regexlm_server.process.send_signal(signal.SIGTERM)
                return await pending

        response = asyncio.run(main())
        assert response.status_code == 200, response.text
        check_body(response.json(), request)
        # uvicorn finishes its graceful shutdown, then re-raises the signal it caught.
        assert regexlm_server.process.wait(60) in (0, -signal.SIGTERM)
