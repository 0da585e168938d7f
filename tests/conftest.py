"""Shared fixtures: the real SmolLM2 tokenizer, a tiny random Llama on it, the default model.

Everything loads from local files: ``HF_HUB_OFFLINE=1`` is set before transformers is imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2 tokenizer (49,152 tokens, byte-level BPE) of the default model."""
    from regexlm.models import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(smollm2_tokenizer):
    """A 2-layer random-weight Llama over the real SmolLM2 vocabulary: (model, tokenizer)."""
    from regexlm.models import build_tiny_llama

    return build_tiny_llama(smollm2_tokenizer, seed=0), smollm2_tokenizer


@pytest.fixture(scope="session")
def default_model():
    """The real default model (SmolLM2-135M-Instruct) on the CPU: (model, tokenizer)."""
    from regexlm.models import load_model

    return load_model(device="cpu")


@pytest.fixture
def prepared(monkeypatch) -> list:
    """The vocabularies :func:`regexlm.index.compiler.prepare` is called with during the test,
    in order (it still runs)."""
    from regexlm.index import compiler

    calls: list = []
    real = compiler.prepare

    def recording(tokenizer):
        calls.append(tokenizer)
        return real(tokenizer)

    monkeypatch.setattr(compiler, "prepare", recording)
    return calls
