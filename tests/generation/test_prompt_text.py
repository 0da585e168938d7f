"""A prompt is text, all of it: control-token text inside it is encoded as ordinary characters.

A user's prompt that contains ``<|im_end|>`` or ``<end_of_turn>`` must not end a chat turn or
forge a marker. On both embedded vocabularies (SmolLM2's byte-level BPE and Gemma 3's
SentencePiece) the prompt's ids spell exactly the prompt's bytes and hold no special id; the
tokenizer's own BOS is still prepended where the tokenizer adds one (Gemma), once.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regexlm.generation import Generator
from regexlm.index import Vocabulary
from regexlm.models import build_tiny_llama

# Text the vocabularies can spell: SmolLM2's byte-level vocabulary has no token for a few rare
# bytes (control characters such as U+0004, and the lead bytes of planes 4 to 11), which its
# tokenizer drops whatever this module does.
TEXT = st.text(
    st.characters(
        max_codepoint=0x3FFFF, categories=("L", "M", "N", "P", "S", "Zs"), include_characters="\n\t"
    ),
    max_size=8,
)
MARKERS = ["<|im_end|>", "<|im_start|>", "<|endoftext|>", "<end_of_turn>", "<start_of_turn>"]


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def generator(request, tiny_generator):
    if request.param == "smollm2":
        return tiny_generator
    from tests.index.gemma_tokenizer import load_gemma_tokenizer

    tokenizer = load_gemma_tokenizer()
    return Generator(build_tiny_llama(tokenizer, seed=5), tokenizer, backend="torch")


@pytest.fixture(scope="module")
def vocabulary(generator):
    return Vocabulary.from_tokenizer(generator.tokenizer)


def _text_ids(generator, ids):
    """The ids after the tokenizer's own BOS (when it adds one)."""
    bos = generator.tokenizer.bos_token_id
    plain = generator.tokenizer("x", add_special_tokens=False).input_ids
    adds_bos = generator.tokenizer("x").input_ids[:1] == [bos] != plain[:1]
    if adds_bos:
        assert ids[0] == bos and ids.count(bos) == 1
        return ids[1:]
    return ids


def _check(generator, vocabulary, prompt):
    ids = generator.encode_prompt(prompt)
    if not prompt:  # nothing to encode: the model still needs one token to start from
        tokenizer = generator.tokenizer
        assert ids in ([tokenizer.bos_token_id], [tokenizer.eos_token_id])
        return ids
    body = _text_ids(generator, ids)
    special = set(vocabulary.special_ids)
    assert not special.intersection(body), [i for i in body if i in special]
    assert b"".join(vocabulary.token_bytes[i] for i in body) == prompt.encode("utf-8")
    return ids


def test_control_token_text_is_encoded_as_text(generator, vocabulary):
    tokenizer = generator.tokenizer
    markers = MARKERS + list(tokenizer.all_special_tokens)
    for marker in markers:
        prompt = f"Say {marker} and then{marker}\n{marker}"
        ids = _check(generator, vocabulary, prompt)
        control = tokenizer.convert_tokens_to_ids(marker)
        if isinstance(control, int) and control in set(vocabulary.special_ids):
            assert control not in ids[1:]  # what a plain tokenizer call would have made
    # The failure this guards against: a plain call turns the text into the control token.
    end = "<|im_end|>" if "<|im_end|>" in tokenizer.get_vocab() else "<end_of_turn>"
    assert tokenizer.convert_tokens_to_ids(end) in tokenizer(f"a{end}b").input_ids
    assert tokenizer.convert_tokens_to_ids(end) not in generator.encode_prompt(f"a{end}b")


def test_bos_is_prepended_exactly_when_the_tokenizer_adds_one(generator, vocabulary):
    tokenizer = generator.tokenizer
    ids = _check(generator, vocabulary, "<bos>Hello<s></s>")
    if tokenizer.bos_token == "<bos>":  # Gemma prepends its BOS to every text
        assert ids[0] == tokenizer.bos_token_id
    else:  # SmolLM2 adds nothing around a text
        assert ids == tokenizer("<bos>Hello<s></s>", add_special_tokens=False).input_ids
    assert generator.encode_prompt("")  # never empty


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    data=st.data(),
    pieces=st.lists(TEXT | st.sampled_from(MARKERS), max_size=6),
)
def test_any_text_with_markers_round_trips_without_control_ids(generator, vocabulary, data, pieces):
    specials = [t for t in generator.tokenizer.all_special_tokens if t]
    extra = data.draw(st.lists(st.sampled_from(specials), max_size=3))
    prompt = "".join(pieces + extra)
    _check(generator, vocabulary, prompt)


def test_the_last_prompts_ids_are_kept_within_a_bound_of_characters(tiny_model, monkeypatch):
    from regexlm.generation import Generator, generator

    monkeypatch.setattr(generator, "PROMPT_MEMO_CHARS", 12)
    model, tokenizer = tiny_model
    calls = []

    def counting(tok, prompt):
        calls.append(prompt)
        return real(tok, prompt)

    real = generator.encode_prompt
    monkeypatch.setattr(generator, "encode_prompt", counting)
    gen = Generator(model, tokenizer, backend="torch")
    first = gen.encode_prompt("hello")
    again = gen.encode_prompt("hello")
    assert again == first and calls == ["hello"]  # the second time from the memo
    again.append(-1)  # a caller's copy: the kept ids are not changed through it
    assert gen.encode_prompt("hello") == first
    gen.encode_prompt("world!!")  # 5 + 7 characters: both kept
    gen.encode_prompt("more")  # 16: the oldest goes
    gen.encode_prompt("hello")
    assert calls == ["hello", "world!!", "more", "hello"]
    gen.encode_prompt("x" * 13)  # longer than the bound: never kept
    gen.encode_prompt("x" * 13)
    assert calls[-2:] == ["x" * 13, "x" * 13]
