"""A real ``regexlm serve`` process on the default model, driven over loopback with httpx.

32 concurrent requests, batching seen in the metrics, streaming, keys from the environment and a
key file, a generated key when none is configured, and SIGTERM letting requests in flight finish.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time

import httpx
import pytest

from tests.server.conftest import AUTH, FILE_KEY, serve_process
from tests.server.scrape import sample

URL = "/v1/completion/regex"

PATTERNS = [
    r"\d{3}-\d{4}",
    r"[a-z]+@[a-z]+\.com",
    ["yes", "no"],
    r"[A-Z][a-z]{2,8}",
    r"(red|green|blue)( and (red|green|blue))?",
    r"\d+(\.\d{1,2})?",
    r"(?i)ok",
    r"[^\n]{3,12}",
]


def check(body: dict, request: dict) -> None:
    patterns = request["pattern"] if isinstance(request["pattern"], list) else [request["pattern"]]
    matches = [i for i, p in enumerate(patterns) if re.fullmatch(p, body["completion"])]
    assert body["matched"] == bool(matches), body
    assert body["pattern_index"] == (matches[0] if matches else None)
    if body["stop_reason"] == "pattern_match":
        assert matches
    else:
        assert body["stop_reason"] == "token_limit"
        assert body["tokens_generated"] == request["max_new_tokens"]


def metric(text: str, name: str, **labels: str) -> float:
    return sample(text, name, default=0.0, **labels)


def test_32_concurrent_requests_succeed_and_are_batched(default_server):
    requests = [
        {
            "prompt": f"Example {i}: ",
            "pattern": PATTERNS[i % len(PATTERNS)],
            "max_new_tokens": 12,
            "temperature": [0, 0.7, 1.0, 1.3][i % 4],
            "top_k": [0, 20, 50][i % 3],
            "top_p": [1, 0.9][i % 2],
            "seed": i,
            "stop_after_match": i % 5 != 0,
        }
        for i in range(32)
    ]

    async def main():
        async with default_server.async_client(headers=AUTH) as client:
            return await asyncio.gather(*(client.post(URL, json=r) for r in requests))

    before = default_server.client().get("/metrics").text
    responses = asyncio.run(main())
    for request, response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        check(body, request)
        assert body["matched"], body  # 12 tokens reach a match for every pattern here
    after = default_server.client().get("/metrics").text
    batches = metric(after, "regexlm_batch_size_count") - metric(before, "regexlm_batch_size_count")
    singles = metric(after, "regexlm_batch_size_bucket", le="1.0") - metric(
        before, "regexlm_batch_size_bucket", le="1.0"
    )
    assert batches - singles >= 1  # at least one batch held more than one request
    assert batches < 32
    status_200 = {"route": "/v1/completion/regex", "method": "POST", "status": "200"}
    requests_total = "regexlm_http_requests_total"
    assert (
        metric(after, requests_total, **status_200) - metric(before, requests_total, **status_200)
        == 32
    )


def test_streaming_over_http(default_server):
    request = {
        "prompt": "My phone number is ",
        "pattern": r"\d{3}-\d{4}",
        "max_new_tokens": 12,
        "stream": True,
        "seed": 7,
    }
    events = []
    with default_server.client(headers=AUTH) as client:
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
    check(final, request)
    assert final["matched"]
    assert "".join(data["text"] for _, data in events[:-1]) == final["completion"]
    assert len(events) - 1 == final["tokens_generated"]


def test_keys_from_env_and_file(default_server):
    with default_server.client() as client:
        body = {"prompt": "a", "pattern": "b"}
        assert (
            client.post(URL, json=body, headers={"Authorization": f"Bearer {FILE_KEY}"}).status_code
            == 200
        )
        assert client.post(URL, json=body, headers=AUTH).status_code == 200
        response = client.post(URL, json=body, headers={"Authorization": "Bearer guess"})
        assert response.status_code == 401
        assert response.json() == {"error": "Invalid API Key provided.", "code": 401}


def test_sigterm_lets_requests_in_flight_finish():
    with serve_process("--max-batch-size", "8", "--log-level", "info", keys=None) as server:
        found = re.search(r"generated one for this run: (\S+)", server.output())
        assert found, server.output()
        key = found.group(1)
        assert server.output().count(key) == 1  # printed once
        assert "REGEXLM_API_KEYS" in server.output() and "--api-key-file" in server.output()
        headers = {"Authorization": f"Bearer {key}"}
        requests = [
            {"prompt": f"Write digits {i}: ", "pattern": r"\d{30}", "max_new_tokens": 40, "seed": i}
            for i in range(4)
        ]

        async def main():
            # Generous: on a loaded machine 40 tokens of four rows can take a minute or more.
            async with server.async_client(headers=headers, timeout=300.0) as client:
                tasks = [asyncio.create_task(client.post(URL, json=r)) for r in requests]
                # Wait until the batch is decoding, then ask the server to stop.
                async with server.async_client() as probe:
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:
                        health = (await probe.get("/health")).json()
                        if health.get("running", 0) >= 1:
                            break
                        await asyncio.sleep(0.02)
                server.process.send_signal(signal.SIGTERM)
                responses = await asyncio.gather(*tasks)
                return responses

        responses = asyncio.run(main())
        for request, response in zip(requests, responses, strict=True):
            assert response.status_code == 200, response.text
            body = response.json()
            check(body, request)
            assert re.fullmatch(r"\d{30}", body["completion"])
        # uvicorn finishes its graceful shutdown, then re-raises the signal it caught.
        assert server.process.wait(120) in (0, -signal.SIGTERM)
        assert "engine drained: every accepted request was answered" in server.output()
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.base_url + "/health", timeout=2)
