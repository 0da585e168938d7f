"""The command line assembles every layer's subcommand and answers --help without torch."""

from __future__ import annotations

import subprocess
import sys

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


def test_version_flag():
    out = subprocess.run(
        [sys.executable, "-m", "regexlm.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("regexlm ")
