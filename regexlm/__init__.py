"""regexlm: make a language model's completion match a regular expression, exactly.

The package is built in five layers, each depending only on the ones before it:

1. ``regexlm.automata``   pattern -> minimized DFA over UTF-8 bytes (pure Python).
2. ``regexlm.index``      (DFA, tokenizer) -> token index: next state, allowed bitmask,
                          fewest tokens to a match (torch tensors on the model's device).
3. ``regexlm.ops``        the per-step kernels: mask, penalty, temperature, top-k, top-p,
                          draw and automaton advance (torch reference, Triton, CUDA).
4. ``regexlm.generation`` the decode loop over a Hugging Face causal LM.
5. ``regexlm.server``     the HTTP service.

Heavy names (torch, transformers) are imported lazily, so ``import regexlm`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module

from regexlm.errors import (
    EmptyLanguageError,
    ModelLoadError,
    PatternTooComplexError,
    PromptTooLongError,
    RegexError,
    RegexlmError,
    RegexSyntaxError,
    UnsupportedRegexError,
)

__version__ = "0.1.0"

# name -> module that defines it; resolved on first access.
_LAZY = {
    "compile_regex": "regexlm.automata",
    "DFA": "regexlm.automata",
    "compile": "regexlm.index",
    "TokenIndex": "regexlm.index",
    "Vocabulary": "regexlm.index",
    "load_model": "regexlm.models",
    "generate": "regexlm.generate",
    "Generator": "regexlm.generation",
    "Completion": "regexlm.generation",
    "GenerationRequest": "regexlm.generation",
    "RegexLogitsProcessor": "regexlm.generation",
}

__all__ = [
    "__version__",
    "EmptyLanguageError",
    "ModelLoadError",
    "PatternTooComplexError",
    "PromptTooLongError",
    "RegexError",
    "RegexlmError",
    "RegexSyntaxError",
    "UnsupportedRegexError",
    *_LAZY,
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'regexlm' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
