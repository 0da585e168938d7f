"""Where regexlm keeps what it builds once and reuses: converted models and token indexes.

Everything lives under one cache root: ``$REGEXLM_CACHE`` when set, else the user cache
directory (``$XDG_CACHE_HOME/regexlm`` or ``~/.cache/regexlm``). Deleting it is always safe.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache root directory (created on first use)."""
    explicit = os.environ.get("REGEXLM_CACHE")
    if explicit:
        root = Path(explicit).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "regexlm"
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the cache root, created on first use."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
