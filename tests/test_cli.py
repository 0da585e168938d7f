"""The command line assembles every layer's subcommand and answers --help without torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

import regexlm
from regexlm.cli import build_parser


def test_help_lists_every_subcommand(capsys):
    parser = build_parser()
    help_text = parser.format_help()
    for command in ("serve", "generate", "bench"):
        assert command in help_text


def test_subcommands_parse_their_options():
    parser = build_parser()
    args = parser.parse_args(["serve", "--port", "0", "--max-batch-size", "4"])
    assert args.command == "serve" and args.port == 0 and args.max_batch_size == 4
    args = parser.parse_args(["generate", "Hi", "--pattern", r"\d+", "--max-new-tokens", "3"])
    assert args.command == "generate" and args.max_new_tokens == 3
    args = parser.parse_args(["bench", "--pattern", "a+", "--steps", "5"])
    assert args.command == "bench" and args.steps == 5 and args.pattern == ["a+"]


def test_help_and_import_do_not_load_torch():
    code = (
        "import sys, regexlm, regexlm.cli\n"
        "regexlm.cli.build_parser().format_help()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'transformers' not in sys.modules, 'transformers imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("module", ["regexlm", "regexlm.cli"])
def test_version_flag_shows_the_package_version(module):
    out = subprocess.run(
        [sys.executable, "-m", module, "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"regexlm {regexlm.__version__}"
    Version(regexlm.__version__)  # a valid PEP 440 version, or this raises


def test_version_is_written_once():
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert re.search(r'^version = \{ ?attr = "regexlm.__version__" ?\}', pyproject, re.M)
    assert not re.search(r'^version = "', pyproject, re.M)
