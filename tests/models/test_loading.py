"""The default model loads offline, its cached copy is faithful, and bad paths fail clearly."""

from __future__ import annotations

import shutil

import pytest
import torch

from regexlm.errors import ModelLoadError
from regexlm.models import build_tiny_llama, load_model, load_tokenizer, resolve_model_source
from regexlm.models.embedded import converted_dir, default_gguf_path, is_converted


@pytest.mark.slow
def test_default_model_greedy_knows_paris(default_model):
    model, tokenizer = default_model
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(out[0, ids.shape[1] :])
    assert "Paris" in text


def test_default_model_is_cached_as_plain_folder(default_model):
    assert is_converted()
    folder = converted_dir()
    assert (folder / "config.json").is_file()
    assert (folder / "model.safetensors").is_file()
    assert resolve_model_source(None).folder == folder
    assert resolve_model_source("smollm2").gguf_file is None


@pytest.mark.slow
def test_cached_copy_gives_the_same_logits_as_the_gguf(default_model):
    model, tokenizer = default_model
    gguf = default_gguf_path()
    original, original_tokenizer = load_model(str(gguf), device="cpu")
    text = "Constrained decoding keeps every token viable."
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert torch.equal(ids, original_tokenizer(text, return_tensors="pt").input_ids)
    with torch.no_grad():
        cached_logits = model(ids).logits
        gguf_logits = original(ids).logits
    assert torch.equal(cached_logits, gguf_logits)


def test_second_load_comes_from_the_cache(default_model, monkeypatch):
    import regexlm.models.loading as loading

    def no_gguf(path):
        raise AssertionError(f"the GGUF file {path} was read again instead of the cache")

    monkeypatch.setattr(loading, "load_gguf", no_gguf)
    model, _ = load_model(device="cpu")
    assert model.config.vocab_size == 49152
    assert getattr(model.config, "quantization_config", None) is None


def test_missing_model_path_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model"):
        load_model(str(missing))


def test_folder_without_config_names_the_path(tmp_path):
    folder = tmp_path / "empty-model"
    folder.mkdir()
    with pytest.raises(ModelLoadError, match="empty-model.*config.json"):
        load_model(str(folder))


def test_corrupt_gguf_names_the_path(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="broken.gguf"):
        load_model(str(bad))


def test_corrupt_weights_name_the_path(tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(converted_dir(), folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_model(str(folder))


def test_non_gguf_file_is_refused(tmp_path):
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"\x00")
    with pytest.raises(ModelLoadError, match="weights.bin"):
        load_tokenizer(str(bad))


def test_tiny_llama_uses_the_real_vocabulary(smollm2_tokenizer):
    model = build_tiny_llama(smollm2_tokenizer, seed=1)
    assert model.config.num_hidden_layers == 2
    ids = smollm2_tokenizer("hello world", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(smollm2_tokenizer))
    # Same seed, same weights: the fixture is reproducible.
    again = build_tiny_llama(smollm2_tokenizer, seed=1)
    with torch.no_grad():
        assert torch.equal(again(ids).logits, logits)
