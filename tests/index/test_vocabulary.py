"""Token bytes are exact for every family; EOS, special ids, size and fingerprint."""

from __future__ import annotations

import pytest

from regexlm.errors import ModelLoadError
from regexlm.index import Vocabulary
from regexlm.index import bytes_families as fam

SAMPLES = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "  leading spaces,\ttabs\tand\nnew\n\nlines  ",
    "Héllo wörld, naïve café, Ünïcödé",
    "日本語のテキストと中文字符",
    "emoji 😀🎉👍🏽 and flags 🇫🇷 mid😀word",
    'def f(x):\n    return {"a": [1, 2.5e-3, null]}\n',
    "numbers 1234567890 and 3.14159, dates 2024-05-17",
    "ASCII control \x01 and \x7f, Arabic مرحبا, Hindi नमस्ते",
    "</div><span>html</span>\n\n\n",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_token_bytes_concatenate_to_the_decoded_text(request, text):
    for name in ("smollm2", "gemma"):
        tokenizer = request.getfixturevalue(f"{name}_tokenizer")
        vocab = request.getfixturevalue(f"{name}_vocab")
        ids = tokenizer.encode(text, add_special_tokens=False)
        joined = b"".join(vocab.token_bytes[i] for i in ids)
        assert joined.decode("utf-8") == tokenizer.decode(ids), name
        assert not set(ids) & set(vocab.special_ids), name


def test_every_token_decodes_like_the_tokenizer_when_whole(
    gemma_tokenizer, gemma_vocab, smollm2_tokenizer, smollm2_vocab
):
    """Each non-special id whose bytes are valid UTF-8 decodes alone to exactly those bytes."""
    for tokenizer, vocab, step in (
        (smollm2_tokenizer, smollm2_vocab, 1),
        (gemma_tokenizer, gemma_vocab, 7),
    ):
        special = set(vocab.special_ids)
        checked = 0
        for i in range(0, vocab.size, step):
            b = vocab.token_bytes[i]
            if i in special or not b:
                continue
            try:
                text = b.decode("utf-8")
            except UnicodeDecodeError:
                continue
            assert tokenizer.decode([i]) == text, (i, b)
            checked += 1
        assert checked > 30_000


def test_families_are_detected_from_the_decoder(smollm2_vocab, gemma_vocab):
    assert smollm2_vocab.family == fam.BYTE_LEVEL
    assert gemma_vocab.family == fam.SENTENCEPIECE
    assert not gemma_vocab.strips_leading_space
    assert smollm2_vocab.size == 49152 and gemma_vocab.size == 262144


def test_byte_level_alphabet_is_a_bijection_on_bytes():
    table = fam.byte_level_alphabet()
    assert sorted(table.values()) == list(range(256))
    assert fam.byte_level_bytes("Ġw") == b" w"
    assert fam.byte_level_bytes("ðŁĺ") == "😀".encode()[:3]
    assert fam.byte_level_bytes("<|im_end|>") == b"<|im_end|>"  # not byte-level encoded


def test_sentencepiece_pieces():
    assert fam.sentencepiece_bytes("\u2581hello") == b" hello"
    assert fam.sentencepiece_bytes("<0x0A>") == b"\n"
    assert fam.sentencepiece_bytes("<0x0A>", byte_fallback=False) == b"<0x0A>"
    assert fam.sentencepiece_bytes("日本") == "日本".encode()


def test_special_and_eos_ids(smollm2_tokenizer, smollm2_vocab, gemma_vocab):
    assert smollm2_vocab.eos_ids == [smollm2_tokenizer.eos_token_id]
    assert set(range(17)) <= set(smollm2_vocab.special_ids)  # chat markers and the like
    assert gemma_vocab.eos_ids == [1, 106]  # <eos> and, from the generation config, <end_of_turn>
    for i in (0, 1, 2, 3, 105, 106):  # pad, eos, bos, unk, start/end of turn
        assert i in gemma_vocab.special_ids
    never = gemma_vocab.never_allowed()
    assert never[[0, 1, 2, 3, 106]].all()
    newline = gemma_vocab.token_bytes.index(b"\n\n")
    assert not never[newline]  # a plain-text added token is text


def test_generation_config_forms(smollm2_tokenizer):
    from transformers import GenerationConfig

    a = Vocabulary.from_tokenizer(
        smollm2_tokenizer, generation_config=GenerationConfig(eos_token_id=[2, 0])
    )
    b = Vocabulary.from_tokenizer(smollm2_tokenizer, generation_config={"eos_token_id": 0})
    assert a.eos_ids == [2, 0] and b.eos_ids == [2, 0]
    assert a.fingerprint == b.fingerprint


def test_model_width_beyond_the_tokenizer_pads_with_empty_tokens(smollm2_tokenizer):
    wide = Vocabulary.from_tokenizer(smollm2_tokenizer, vocab_size=49152 + 64)
    assert wide.size == 49216
    assert wide.token_bytes[-1] == b"" and wide.never_allowed()[-64:].all()


def test_fingerprint_is_stable_and_sensitive(smollm2_tokenizer, smollm2_vocab):
    again = Vocabulary.from_tokenizer(smollm2_tokenizer)
    assert again.fingerprint == smollm2_vocab.fingerprint
    changed = Vocabulary(
        smollm2_vocab.token_bytes, smollm2_vocab.eos_ids, smollm2_vocab.special_ids[:-1]
    )
    assert changed.fingerprint != smollm2_vocab.fingerprint
    other_eos = Vocabulary(smollm2_vocab.token_bytes, [0], smollm2_vocab.special_ids)
    assert other_eos.fingerprint != smollm2_vocab.fingerprint


def test_raw_bytes_vocabulary_from_a_tiktoken_style_encoding():
    class Encoding:
        n_vocab = 5
        eot_token = 4
        _special_tokens = {"<|endoftext|>": 4}
        _pieces = [b"a", b"\xe6\x97", b"\xa5", b" b"]

        def decode_single_token_bytes(self, i):
            return self._pieces[i]

    vocab = Vocabulary.from_tokenizer(Encoding(), vocab_size=8)
    assert vocab.family == fam.RAW_BYTES
    assert vocab.token_bytes[:4] == [b"a", b"\xe6\x97", b"\xa5", b" b"]
    assert vocab.eos_ids == [4] and vocab.special_ids == [4]
    assert vocab.size == 8


def test_unsupported_tokenizer_family_is_a_clear_error():
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    with pytest.raises(ModelLoadError, match="tokenizer family not supported"):
        Vocabulary.from_tokenizer(tokenizer)
    with pytest.raises(ModelLoadError, match="cannot read token bytes"):
        Vocabulary.from_tokenizer(object())


def test_out_of_range_ids_are_rejected():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        Vocabulary([b"a"], eos_ids=[3])
