"""Index fixtures: the two real vocabularies, loaded once per session, and an isolated cache."""

from __future__ import annotations

import pytest

from regexlm.index import Vocabulary


@pytest.fixture(scope="session")
def smollm2_vocab(smollm2_tokenizer) -> Vocabulary:
    return Vocabulary.from_tokenizer(smollm2_tokenizer)


@pytest.fixture(scope="session")
def gemma_tokenizer():
    from tests.index.gemma_tokenizer import load_gemma_tokenizer

    return load_gemma_tokenizer()


@pytest.fixture(scope="session")
def gemma_vocab(gemma_tokenizer) -> Vocabulary:
    # Gemma 3's generation config ends a turn with <end_of_turn> as well as <eos>.
    return Vocabulary.from_tokenizer(gemma_tokenizer, generation_config={"eos_token_id": [1, 106]})


@pytest.fixture(params=["smollm2", "gemma"], scope="session")
def real_vocab(request) -> Vocabulary:
    return request.getfixturevalue(f"{request.param}_vocab")


@pytest.fixture
def index_cache_dir(tmp_path, monkeypatch):
    """A private cache root, with the in-memory index cache emptied before and after."""
    from regexlm.index import cache

    monkeypatch.setenv("REGEXLM_CACHE", str(tmp_path))
    cache.clear_memory()
    yield tmp_path / "index"
    cache.clear_memory()
