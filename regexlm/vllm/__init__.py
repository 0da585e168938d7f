"""regexlm inside vLLM: the same exact, budget-aware constraint on vLLM's engine.

vLLM brings continuous batching, a paged KV cache and tensor, pipeline and data parallelism;
regexlm brings the constraint. They meet in a logits processor:

* :class:`RegexLogitsProcessor` (:mod:`regexlm.vllm.processor`) constrains every request whose
  ``SamplingParams.extra_args`` carries ``regex`` (a pattern or a list), with
  ``stop_after_match`` (default true). Installing regexlm registers it under vLLM's
  ``vllm.logits_processors`` entry point, so any vLLM engine in the environment (``LLM``,
  ``AsyncLLM``, vLLM's OpenAI server, where ``vllm_xargs`` carries the arguments) applies it;
  requests without ``regex`` are untouched.
* :mod:`regexlm.vllm.engine` puts regexlm's HTTP service on vLLM's async engine
  (``regexlm serve --engine vllm``).

Modules, in the order a request meets them: ``arguments`` (what ``extra_args`` may hold,
checked in vLLM's frontend), ``patterns`` (compiled token indexes, a bounded LRU), ``rows``
(per-request automaton state across vLLM's batch updates), ``joint`` and ``masker`` (one masked
write per step for a batch of mixed patterns), ``processor`` (the vLLM interfaces), ``engine``
and ``command`` (``regexlm serve --engine vllm``).

Only ``arguments`` is importable without vLLM; the rest needs it installed.
"""

from __future__ import annotations

from importlib import import_module

_LAZY = {
    "RegexLogitsProcessor": "regexlm.vllm.processor",
    "RegexArguments": "regexlm.vllm.arguments",
    "request_arguments": "regexlm.vllm.arguments",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'regexlm.vllm' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
