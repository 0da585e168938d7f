"""regexlm.index.compiler: what prepare makes ahead of the first patterns."""

from __future__ import annotations

import regexlm
from regexlm.automata import utf8
from regexlm.index.compiler import prepare


def test_prepare_makes_the_common_classes_automata_the_first_patterns_would_make(smollm2_vocab):
    """After prepare, a pattern of nothing but the common broad classes (each alone on its NFA
    state, as a Thompson NFA puts them) makes no UTF-8 automaton of its own, with or without
    case folding: the process's first patterns do not pay for them."""
    utf8.utf8_partition_automaton.cache_clear()
    assert prepare(smollm2_vocab) is smollm2_vocab
    for pattern in [r'\w+\d+\s*[^"]*.', r"(?i)\w+\d+\s*"]:
        made = utf8.utf8_partition_automaton.cache_info().misses
        index = regexlm.compile(pattern, smollm2_vocab, cache=False)
        assert index.allowed_tokens(index.start_state).numel() > 0
        assert utf8.utf8_partition_automaton.cache_info().misses == made, pattern


def test_a_missing_tokenizer_is_named(smollm2_vocab):
    import pytest

    for tokenizer in (None, "smollm2", 3):
        with pytest.raises(TypeError, match="tokenizer must be a Hugging Face tokenizer"):
            regexlm.compile("a", tokenizer)
