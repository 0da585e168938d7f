"""``python -m regexlm.models.prepare``: convert the default model into the cache, once.

Run by the project's setup so that the first request does not pay the ~20 s conversion.
"""

from __future__ import annotations

import sys

from regexlm.models.embedded import converted_dir, ensure_converted, is_converted


def main() -> int:
    if is_converted():
        print(f"regexlm setup: default model ready in {converted_dir()}")
        return 0
    ensure_converted()
    return 0


if __name__ == "__main__":
    sys.exit(main())
