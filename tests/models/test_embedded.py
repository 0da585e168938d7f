"""The second embedded model, Gemma 3 270M, loads offline by name and generates under a pattern."""

from __future__ import annotations

import re

import pytest
import torch

from regexlm.errors import ModelLoadError
from regexlm.models import load_model, resolve_model_source
from regexlm.models.embedded import EMBEDDED_MODELS, GEMMA3_270M, SMOLLM2, find_embedded


def test_names_resolve_to_embedded_models():
    assert find_embedded(None) is SMOLLM2
    assert find_embedded("SmolLM2") is SMOLLM2
    assert find_embedded("gemma3") is GEMMA3_270M
    assert find_embedded("./gemma3") is None
    assert {"smollm2", "gemma3-270m"} <= set(EMBEDDED_MODELS)


def test_unknown_name_lists_the_embedded_models(tmp_path):
    with pytest.raises(ModelLoadError, match="gemma3-270m"):
        resolve_model_source(str(tmp_path / "nothing"))


@pytest.mark.slow
def test_gemma_loads_by_name_and_generates_a_match():
    from regexlm import Generator

    model, tokenizer = load_model("gemma3-270m", device="cpu")
    assert model.config.vocab_size == 262144
    assert resolve_model_source("gemma3-270m").gguf_file is None  # served from the cache
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()
    generator = Generator(model, tokenizer)
    result = generator.generate(
        "The year the Eiffel Tower opened: ", r"1[0-9]{3}", max_new_tokens=8, temperature=0
    )
    assert result.matched and re.fullmatch(r"1[0-9]{3}", result.completion)
    assert tokenizer.decode(result.token_ids) == result.completion
