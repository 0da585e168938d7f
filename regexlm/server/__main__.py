"""``python -m regexlm.server``: the same as ``regexlm serve``."""

from __future__ import annotations

import argparse
import sys

from regexlm.server.command import add_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m regexlm.server", description="Serve POST /v1/completion/regex."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
