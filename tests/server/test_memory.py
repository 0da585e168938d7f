"""A thousand distinct heavy patterns against a running service: memory stays bounded.

Before indexes were built on demand, one pattern like ``(a|b)*a(a|b){12}`` held 51 MB. Here a
real ``regexlm serve`` process (the tiny random Llama over the real tokenizer) gets 1,000
distinct patterns of that kind, sixteen at a time, with its index cache bounded at 32 MB. Every
request gets an answer (200, a clear 4xx or 503) and the process's resident memory grows by no
more than the cache bound plus a fixed allowance for the interpreter and allocator.
"""

from __future__ import annotations

import asyncio
import os
import re

import httpx
import pytest

from tests.server.conftest import API_KEY, serve_process

CACHE_BYTES = 32 << 20
ALLOWANCE = 160 << 20  # interpreter, allocator, per-batch tensors: not the index cache


def heavy_patterns(n: int) -> list[str]:
    shapes = [
        lambda k: rf"(a|b)*a(a|b){{{10 + k % 40}}}",
        lambda k: rf"\w{{1,{20 + k % 80}}}",
        lambda k: rf"[a-z]{{1,{10 + k % 50}}}@\w{{1,{5 + k % 30}}}\.com",
        lambda k: rf".{{0,{100 + k % 400}}}",
        lambda k: rf"(\w+\s?){{1,{2 + k % 12}}}",
        lambda k: rf"\d{{1,{10 + k % 90}}}-[x-z]{{{1 + k % 7}}}",
    ]
    out, k = [], 0
    while len(out) < n:
        pattern = shapes[k % len(shapes)](k // len(shapes)) + f"(q{k})?"
        out.append(pattern)
        k += 1
    return out


def rss(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def bounded_server(tmp_path_factory, tiny_model):
    model, tokenizer = tiny_model
    folder = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    saved = os.environ.get("REGEXLM_INDEX_MEMORY_BYTES")
    os.environ["REGEXLM_INDEX_MEMORY_BYTES"] = str(CACHE_BYTES)
    try:
        with serve_process("--model", str(folder), "--max-new-tokens-limit", "4") as server:
            yield server
    finally:
        if saved is None:
            os.environ.pop("REGEXLM_INDEX_MEMORY_BYTES", None)
        else:
            os.environ["REGEXLM_INDEX_MEMORY_BYTES"] = saved


def test_a_thousand_heavy_patterns_keep_memory_bounded(bounded_server):
    url = bounded_server.base_url + "/v1/completion/regex"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    patterns = heavy_patterns(1000)
    assert len(set(patterns)) == 1000
    pid = bounded_server.process.pid

    async def send(client, pattern):
        body = {"prompt": "x", "pattern": pattern, "max_new_tokens": 2, "temperature": 0}
        response = await client.post(url, json=body, headers=headers)
        return pattern, response

    async def run(chunk):
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(send(client, p) for p in chunk))

    warm = asyncio.run(run(patterns[:16]))
    assert all(r.status_code == 200 for _, r in warm), [r.text for _, r in warm]
    baseline = rss(pid)
    peak = baseline
    statuses: dict[int, int] = {}
    for i in range(16, len(patterns), 16):
        for pattern, response in asyncio.run(run(patterns[i : i + 16])):
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code in (200, 400, 413, 422, 503), response.text
            body = response.json()
            if response.status_code == 200:
                # a viable prefix of a match, or a match when it says so
                if body["matched"]:
                    assert re.fullmatch(pattern, body["completion"]), (pattern, body)
            else:
                assert body["error"], body
        peak = max(peak, rss(pid))
    assert bounded_server.process.poll() is None, bounded_server.output()[-2000:]
    assert statuses.get(200, 0) >= 900, statuses
    grown = peak - baseline
    assert grown <= CACHE_BYTES + ALLOWANCE, (grown / 2**20, statuses)
