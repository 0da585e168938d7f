"""``regexlm serve`` refuses a bad configuration at once, before loading any model."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from regexlm.server.command import add_parser, resolve_keys
from tests.server.conftest import ROOT


def serve(*args: str, env_keys: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("REGEXLM_API_KEYS", None)
    if env_keys is not None:
        env["REGEXLM_API_KEYS"] = env_keys
    return subprocess.run(
        [sys.executable, "-m", "regexlm.server", "--port", "0", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["--max-batch-size", "0"], "max_batch_size must be a positive integer"),
        (["--request-timeout", "-1"], "request_timeout must be positive"),
        (["--compile-timeout", "nan"], "compile_timeout must be a finite number"),
    ],
)
def test_bad_limits_exit_with_status_2(args, words):
    result = serve(*args)
    assert result.returncode == 2
    assert words in result.stderr
    assert "loading model" not in result.stderr


def test_unusable_key_file_exits_with_status_2(tmp_path):
    empty = tmp_path / "keys.txt"
    empty.write_text("# no keys yet\n")
    result = serve("--api-key-file", str(empty))
    assert result.returncode == 2 and "holds no key" in result.stderr
    result = serve("--api-key-file", str(tmp_path / "missing.txt"))
    assert result.returncode == 2 and "cannot read the API key file" in result.stderr


def test_keys_add_up_and_a_key_is_generated_only_when_none_is_set(tmp_path, monkeypatch):
    path = tmp_path / "keys.txt"
    path.write_text("from-file\n")
    monkeypatch.setenv("REGEXLM_API_KEYS", "from-env")
    assert resolve_keys(str(path)) == (["from-env", "from-file"], False)
    monkeypatch.delenv("REGEXLM_API_KEYS")
    keys, generated = resolve_keys(None)
    assert generated and len(keys) == 1 and keys[0].startswith("rlm-")


def test_serve_subcommand_defaults():
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve"])
    assert (args.host, args.port, args.model, args.device) == ("127.0.0.1", 8000, None, None)
    assert args.max_batch_size == 32 and args.max_new_tokens_limit == 256
    assert callable(args.func)
