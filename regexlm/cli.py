"""The ``regexlm`` command line: ``serve``, ``generate`` and ``bench``.

Each layer owns its subcommand (``regexlm.server.command``, ``regexlm.generation.command``,
``regexlm.bench_command``); this module only assembles them. Imports stay lazy so that
``regexlm --help`` answers at once, without loading torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from regexlm import __version__

# Subcommand modules, each exposing add_parser(subparsers).
_SUBCOMMANDS = (
    "regexlm.server.command",
    "regexlm.generation.command",
    "regexlm.bench_command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regexlm",
        description="Constrained generation: a language model's completion matches a regular expression.",
    )
    parser.add_argument("--version", action="version", version=f"regexlm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _SUBCOMMANDS:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
