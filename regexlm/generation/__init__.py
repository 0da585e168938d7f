"""Constrained generation over a Hugging Face causal LM.

* :func:`generate` -- one prompt, one call; the default model is loaded once per process.
* :class:`Generator` -- a model and tokenizer with their compiled patterns; ``generate`` and
  ``generate_batch`` (one padded prefill, a KV cache, one sampling step per iteration for all
  live rows).
* :class:`RegexLogitsProcessor` -- the same constraint inside transformers' own ``generate``.
* :class:`GenerationRequest` and :class:`Completion` -- what goes in and what comes out.

Names are imported on first use, so ``regexlm generate --help`` answers without loading torch.
"""

from __future__ import annotations

from importlib import import_module

_LAZY = {
    "Completion": "regexlm.generation.completion",
    "GenerationRequest": "regexlm.generation.request",
    "Generator": "regexlm.generation.generator",
    "RegexLogitsProcessor": "regexlm.generation.logits_processor",
    "generate": "regexlm.generation.default",
    "shared_generator": "regexlm.generation.default",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'regexlm.generation' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
