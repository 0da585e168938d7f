"""regexlm's C helpers: one shared library, built with the system C compiler on first use.

Four sources go into it: the vocabulary trie walk (``index/trie_walk.c``, used through
:mod:`regexlm.index.native_walk`), the making of a pattern's class trie
(``index/class_trie.c``, used through :mod:`regexlm.index.class_trie`), a row's refinement of
the token classes (``index/token_classes.c``, through :mod:`regexlm.index.native_walk`) and the
lazy DFA's state cache (``automata/lazy_dfa.c``, used through :mod:`regexlm.automata.native_lazy`). Each has a
Python version beside it that gives the same results, which the tests hold them to.

The library is compiled once per machine into the cache (``$REGEXLM_CACHE/native``), named by a
hash of its sources and compiler, and loaded with :mod:`ctypes`: no build step at install time,
and nothing to build for the pure-Python wheel. Where no compiler works, or with
``REGEXLM_NATIVE=0``, :func:`library` returns None and the Python versions are used instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parent
SOURCES = (
    PACKAGE / "index" / "trie_walk.c",
    PACKAGE / "index" / "class_trie.c",
    PACKAGE / "index" / "token_classes.c",
    PACKAGE / "automata" / "lazy_dfa.c",
)
NATIVE_VARIABLE = "REGEXLM_NATIVE"

_lock = threading.Lock()
_loaded: list = []  # [library or None] once tried


_byte_at = ctypes.c_byte.from_buffer
_address_of = ctypes.addressof


def address(a) -> int:
    """The address of a contiguous numpy array's first byte, for a C call. A writable array's
    is read through the buffer protocol (about a third of the cost of ``a.ctypes.data``, which
    makes an object each time: a compile takes dozens); others (read-only or empty: the buffer
    protocol refuses them) go through ``a.ctypes``; a strided one is refused."""
    try:
        return _address_of(_byte_at(a))
    except (TypeError, ValueError):
        if not a.flags.c_contiguous:
            raise ValueError("a C call needs a contiguous array") from None
        return a.ctypes.data


_switch: list = []  # [whether REGEXLM_NATIVE allows the helpers] once read


def enabled() -> bool:
    """Whether the C helpers may be used (``REGEXLM_NATIVE=0`` turns them off), read from the
    environment once per process: a compile asks a dozen times, and reading the environment
    costs about a microsecond. :func:`reread_switch` reads it again."""
    if not _switch:
        _switch.append(
            os.environ.get(NATIVE_VARIABLE, "1").strip() not in ("0", "false", "no", "off")
        )
    return _switch[0]


def reread_switch() -> bool:
    """Read ``REGEXLM_NATIVE`` again (after the environment changed); returns :func:`enabled`."""
    _switch.clear()
    return enabled()


def library() -> ctypes.CDLL | None:
    """The loaded library, or None where it is off or cannot be built (logged once)."""
    if not enabled():
        return None
    if _loaded:
        return _loaded[0]
    with _lock:
        if not _loaded:
            try:
                _loaded.append(ctypes.CDLL(str(_build())))
            except Exception as exc:  # no compiler, no cache directory, ...
                log.warning("regexlm: the C helpers are unavailable (%s); using Python", exc)
                _loaded.append(None)
    return _loaded[0]


_declared: dict = {}  # (name, id of the library) -> what its declare function returned


def declared(name: str, declare):
    """``declare(library)`` (a module's C functions, their signatures set) made once per
    library; None without the library."""
    lib = library()
    if lib is None:
        return None
    key = (name, id(lib))
    found = _declared.get(key)
    if found is None:
        with _lock:
            found = _declared.get(key)
            if found is None:
                found = _declared[key] = declare(lib)
    return found


def _build() -> Path:
    from regexlm.paths import cache_dir

    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc) on PATH")
    digest = hashlib.sha256(compiler.encode())
    for source in SOURCES:
        digest.update(source.read_bytes())
    target = cache_dir("native") / f"regexlm-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        command = [compiler, "-O3", "-shared", "-fPIC", "-o", str(built), *map(str, SOURCES)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()[:500]}")
        os.replace(built, target)  # atomic: concurrent builders agree
    return target
