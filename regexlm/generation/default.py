"""`generate()`: one call, no setup; the default model is loaded once per process.

Generators are built lazily and kept for the life of the process, one per model name or path
(``None`` is the embedded default). Building is guarded by a lock, so concurrent first calls load
the model once; each shared Generator also has its own lock, because a Generator is driven by one
thread at a time. Long-running services that batch requests should hold their own
:class:`~regexlm.generation.generator.Generator` instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from regexlm.generation.completion import Completion

_build_lock = threading.Lock()
# model name or path as given, and as resolved to files -> (Generator, its lock)
_shared: dict[object, tuple[object, threading.Lock]] = {}


def shared_generator(model: str | os.PathLike | None = None):
    """The process-wide Generator for a model name or path, built on first use."""
    return _shared_entry(model)[0]


def _shared_entry(model):
    entry = _shared.get(model)  # fast path: the very name seen before
    if entry is not None:
        return entry
    from regexlm.models import resolve_model_source

    # Names that resolve to the same files ("smollm2", None, its folder) share one Generator.
    key = resolve_model_source(None if model is None else os.fspath(model)).describe()
    with _build_lock:
        entry = _shared.get(key)
        if entry is None:
            from regexlm.generation.generator import Generator

            entry = (Generator.from_pretrained(key), threading.Lock())
            _shared[key] = entry
        _shared[model] = entry
    return entry


def generate(
    prompt: str,
    pattern: str | Sequence[str],
    *,
    model=None,
    max_new_tokens: int = 5,
    stop_after_match: bool = True,
    top_k: int = 50,
    top_p: float = 1.0,
    temperature: float = 1.0,
    repetition_penalty: float = 1.0,
    seed: int | None = None,
) -> Completion:
    """Complete ``prompt`` so that the completion fully matches ``pattern`` (or one of a list).

    ``model`` is a model name or local path (default: the embedded SmolLM2-135M-Instruct) or a
    :class:`~regexlm.generation.generator.Generator`. See :class:`Completion` for the result.
    """
    from regexlm.generation.generator import Generator

    params = dict(
        max_new_tokens=max_new_tokens,
        stop_after_match=stop_after_match,
        top_k=top_k,
        top_p=top_p,
        temperature=temperature,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    if isinstance(model, Generator):
        return model.generate(prompt, pattern, **params)
    generator, lock = _shared_entry(model)
    with lock:
        return generator.generate(prompt, pattern, **params)
