"""Token strings to exact bytes, one function per tokenizer family.

A tokenizer stores each token as a string, but the string is an encoding of bytes, and each
family encodes differently:

* **Byte-level BPE** (GPT-2, SmolLM2, Llama 3, Qwen): every byte is drawn as one printable
  character through a fixed 256-entry table (printable ASCII and Latin-1 map to themselves,
  the other bytes to U+0100 and up). A token ``"Ġw"`` is the bytes ``b" w"``; a token may hold
  half of a UTF-8 character.
* **SentencePiece** (Llama 2, Mistral, Gemma): a space is drawn as ``"▁"`` (U+2581) and the rest
  of the piece is UTF-8 text; with byte fallback, the 256 pieces ``"<0x00>"`` .. ``"<0xFF>"``
  stand for single raw bytes.
* **Raw bytes** (tiktoken-style): the vocabulary already maps ids to ``bytes``.

The family is read from the tokenizer's own description of how it decodes (the backend's
decoder, pre-tokenizer and model settings), never guessed from the model's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache

BYTE_LEVEL = "byte_level"
SENTENCEPIECE = "sentencepiece"
RAW_BYTES = "raw_bytes"

SPACE_MARK = "\u2581"  # "▁", SentencePiece's visible space
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@lru_cache(maxsize=1)
def byte_level_alphabet() -> dict[str, int]:
    """The byte-level BPE table inverted: drawn character -> byte value (256 entries)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    chars: dict[str, int] = {chr(b): b for b in printable}
    shift = 0
    for b in range(256):
        if b not in printable:
            chars[chr(256 + shift)] = b
            shift += 1
    return chars


def byte_level_bytes(piece: str) -> bytes:
    """Bytes of a byte-level BPE token string.

    A string with a character outside the table (an added token such as ``"<|im_end|>"`` drawn
    in plain text) is not byte-level encoded: it stands for its own UTF-8, exactly as the
    byte-level decoder treats it.
    """
    table = byte_level_alphabet()
    try:
        return bytes(table[ch] for ch in piece)
    except KeyError:
        return piece.encode("utf-8")


def sentencepiece_bytes(piece: str, byte_fallback: bool = True) -> bytes:
    """Bytes of a SentencePiece token string: ``▁`` is a space, ``<0xNN>`` one raw byte."""
    if byte_fallback:
        m = _BYTE_PIECE.fullmatch(piece)
        if m is not None:
            return bytes([int(m.group(1), 16)])
    return piece.replace(SPACE_MARK, " ").encode("utf-8")


def _component(obj) -> dict | None:
    """The JSON description of a `tokenizers` component (decoder, pre-tokenizer, normalizer)."""
    if obj is None:
        return None
    try:
        return json.loads(obj.__getstate__())
    except Exception:
        return None


def _walk(node) -> Iterable[dict]:
    """Every JSON object in a component description, nested sequences included."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _types(node) -> set[str]:
    return {d["type"] for d in _walk(node) if isinstance(d.get("type"), str)}


def detect_backend_family(backend) -> tuple[str, dict]:
    """Family of a `tokenizers.Tokenizer` from its decoder, pre-tokenizer and model.

    Returns ``(family, details)``; ``details`` says whether ``<0xNN>`` pieces are raw bytes
    (``byte_fallback``) and whether decoding drops the first token's leading space
    (``strips_leading_space``, as Llama 2's ``Strip`` decoder and ``Metaspace`` do).
    Raises ``ValueError`` when the tokenizer's strings are not an exact encoding of bytes.
    """
    decoder = _component(backend.decoder)
    pre = _component(backend.pre_tokenizer)
    model = backend.model
    dec_types = _types(decoder)
    pre_types = _types(pre)
    byte_fallback = bool(getattr(model, "byte_fallback", False))
    details = {"byte_fallback": byte_fallback, "strips_leading_space": False}
    if "ByteLevel" in dec_types or (decoder is None and "ByteLevel" in pre_types):
        return BYTE_LEVEL, details
    replaces_mark = any(
        d.get("type") == "Replace"
        and SPACE_MARK in json.dumps(d.get("pattern"), ensure_ascii=False)
        for d in _walk(decoder)
    )
    if "ByteFallback" in dec_types or "Metaspace" in dec_types or replaces_mark:
        details["byte_fallback"] = byte_fallback or "ByteFallback" in dec_types
        strip = any(d.get("type") == "Strip" and d.get("start", 0) > 0 for d in _walk(decoder))
        metaspace_first = any(
            d.get("type") == "Metaspace" and d.get("prepend_scheme", "always") != "never"
            for d in _walk(decoder)
        )
        details["strips_leading_space"] = strip or metaspace_first
        return SENTENCEPIECE, details
    raise ValueError(
        "tokenizer family not supported: its decoder "
        f"({', '.join(sorted(dec_types)) or 'none'}) is neither byte-level BPE nor SentencePiece"
    )


def piece_bytes(family: str, piece, byte_fallback: bool = True) -> bytes:
    """Bytes of one vocabulary entry of the given family."""
    if family == RAW_BYTES:
        return bytes(piece)
    if family == BYTE_LEVEL:
        return byte_level_bytes(piece)
    if family == SENTENCEPIECE:
        return sentencepiece_bytes(piece, byte_fallback)
    raise ValueError(f"unknown tokenizer family {family!r}")
