"""Fixtures of the HTTP service tests: API keys, a real tiny generator, a real server process.

``serve_process`` starts ``python -m regexlm.server`` on 127.0.0.1 with an ephemeral port, reads
the port from its ``serving on`` line and stops it with SIGTERM afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

API_KEY = "test-key-0123456789"
OTHER_KEY = "second-key-abcdef"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ROOT = Path(__file__).resolve().parents[2]

SEED_EXAMPLE = {
    "prompt": "This is a sample prompt",
    "pattern": ".*prompt$",
    "max_new_tokens": 10,
    "stop_after_match": False,
    "top_k": 50,
    "top_p": 0.9,
    "temperature": 0.8,
    "repetition_penalty": 1.2,
}


@pytest.fixture(scope="session")
def tiny_generator(tiny_model):
    """A real :class:`Generator` over the tiny random Llama (fast, exercises every path)."""
    from regexlm.generation import Generator

    model, tokenizer = tiny_model
    return Generator(model, tokenizer, device="cpu")


class ServerProcess:
    def __init__(self, process: subprocess.Popen, log: Path, base_url: str):
        self.process = process
        self.log = log
        self.base_url = base_url

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=kwargs.pop("timeout", 60.0), **kwargs)

    def async_client(self, **kwargs) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url, timeout=kwargs.pop("timeout", 60.0), **kwargs
        )

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextmanager
def serve_process(
    *extra: str, keys: str | None = f"{API_KEY},{OTHER_KEY}", startup_timeout: float = 120.0
):
    """Run ``python -m regexlm.server --port 0`` on 127.0.0.1 and yield a :class:`ServerProcess`.

    ``keys`` goes to ``REGEXLM_API_KEYS``; None leaves the variable unset.
    """
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env.pop("REGEXLM_API_KEYS", None)
    if keys is not None:
        env["REGEXLM_API_KEYS"] = keys
    handle, name = tempfile.mkstemp(prefix="regexlm-serve-", suffix=".log")
    log = Path(name)
    with os.fdopen(handle, "wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "regexlm.server",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--log-level",
                "warning",
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = None
    try:
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            found = re.search(
                r"serving on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace")
            )
            if found:
                server = ServerProcess(process, log, found.group(1))
                break
            if process.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        if server is None:
            raise RuntimeError(f"the server did not start:\n{log.read_text(errors='replace')}")
        while time.monotonic() < deadline:
            try:
                if httpx.get(server.base_url + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.unlink(missing_ok=True)


FILE_KEY = "key-from-a-file"


@pytest.fixture(scope="session")
def default_server(tmp_path_factory):
    """A real ``regexlm serve`` process on the default model, shared by the tests that need one.

    Keys: the two of ``REGEXLM_API_KEYS`` plus one from ``--api-key-file``.
    """
    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text(f"# keys for the tests\n\n{FILE_KEY}\n")
    with serve_process(
        "--max-batch-size",
        "32",
        "--max-new-tokens-limit",
        "64",
        "--max-body-bytes",
        "65536",
        "--request-timeout",
        "60",
        "--compile-timeout",
        "5",
        "--api-key-file",
        str(key_file),
    ) as server:
        yield server
