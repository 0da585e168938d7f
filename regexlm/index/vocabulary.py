"""The vocabulary as the automaton sees it: the exact bytes of every token id.

A language model picks token ids; the automaton reads bytes. :class:`Vocabulary` is the bridge:
``token_bytes[i]`` is what id ``i`` appends to the text, as raw bytes (possibly half of a
UTF-8 character). Alongside the bytes it records

* ``eos_ids``: every id that ends the sequence (the tokenizer's and the generation config's);
* ``special_ids``: ids that never appear in constrained text (control and chat markers,
  padding, unknown, EOS). An id whose bytes are empty is never allowed either;
* ``size``: the width of the model's logits, which may exceed the tokenizer (the extra ids
  have empty bytes);
* ``fingerprint``: a stable hash of all of the above, the key of every index cache.

The device-side precomputation the index build needs (a trie of the distinct byte strings,
see :mod:`regexlm.index.trie`) is made once per device and kept on the vocabulary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from regexlm.errors import ModelLoadError
from regexlm.index import bytes_families as fam


class Vocabulary:
    """Exact token bytes plus the ids that end or never appear in constrained text."""

    def __init__(
        self,
        token_bytes: Sequence[bytes],
        eos_ids: Iterable[int] = (),
        special_ids: Iterable[int] = (),
        *,
        size: int | None = None,
        family: str = fam.RAW_BYTES,
        strips_leading_space: bool = False,
    ):
        token_bytes = [bytes(b) for b in token_bytes]
        if size is not None:
            if size < len(token_bytes):
                raise ValueError(
                    f"vocabulary size {size} is smaller than the tokenizer ({len(token_bytes)})"
                )
            token_bytes += [b""] * (size - len(token_bytes))
        self.token_bytes: list[bytes] = token_bytes
        self.size: int = len(token_bytes)
        self.eos_ids: list[int] = _checked_ids(eos_ids, self.size, "EOS")
        self.special_ids: list[int] = sorted(
            set(_checked_ids(special_ids, self.size, "special")) | set(self.eos_ids)
        )
        self.family = family
        # Decoding a whole completion drops the first token's leading space (Llama 2's
        # SentencePiece); the bytes here keep it, as they are what the token adds mid-text.
        self.strips_leading_space = strips_leading_space
        self.fingerprint: str = self._fingerprint()
        self._device_tables: dict[str, object] = {}

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return (
            f"Vocabulary(size={self.size}, family={self.family!r}, eos_ids={self.eos_ids}, "
            f"special={len(self.special_ids)}, fingerprint={self.fingerprint[:12]})"
        )

    # -- what can be allowed ---------------------------------------------------------------

    def never_allowed(self) -> np.ndarray:
        """``bool[V]``: ids that no pattern ever allows as text (special ids, empty bytes)."""
        mask = np.fromiter((len(b) == 0 for b in self.token_bytes), dtype=bool, count=self.size)
        mask[self.special_ids] = True
        return mask

    def tables(self, device=None):
        """The per-device trie of token bytes (built on first use, then cached here)."""
        key = "cpu" if device is None else str(device)
        found = self._device_tables.get(key)
        if found is None:
            import torch

            from regexlm.index.trie import VocabTrie

            key = str(torch.device(key))
            found = self._device_tables.get(key)
            if found is None:
                cpu = self._device_tables.get("cpu") or VocabTrie.build(self)
                self._device_tables["cpu"] = cpu
                found = cpu.to(key)
                self._device_tables[key] = found
        return found

    def byte_matrix(self, device=None):
        """``(uint8[V, Lmax], int32[V])``: every token's bytes, zero-padded, and their lengths."""
        import torch

        lengths = np.fromiter((len(b) for b in self.token_bytes), dtype=np.int32, count=self.size)
        width = max(1, int(lengths.max(initial=0)))
        flat = np.frombuffer(b"".join(self.token_bytes), dtype=np.uint8)
        mat = np.zeros((self.size, width), dtype=np.uint8)
        rows = np.repeat(np.arange(self.size), lengths)
        cols = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        mat[rows, cols] = flat
        return torch.from_numpy(mat).to(device), torch.from_numpy(lengths).to(device)

    # -- construction ----------------------------------------------------------------------

    def _fingerprint(self) -> str:
        h = hashlib.sha256(b"regexlm-vocabulary-v1")
        lengths = np.fromiter((len(b) for b in self.token_bytes), dtype="<i8", count=self.size)
        h.update(np.int64(self.size).tobytes())
        h.update(lengths.tobytes())
        h.update(b"".join(self.token_bytes))
        h.update(np.asarray(self.special_ids, dtype="<i8").tobytes())
        h.update(b"|eos|")
        h.update(np.asarray(self.eos_ids, dtype="<i8").tobytes())
        return h.hexdigest()

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer,
        vocab_size: int | None = None,
        *,
        generation_config=None,
        eos_ids: Iterable[int] | None = None,
    ) -> Vocabulary:
        """The exact vocabulary of a tokenizer.

        ``tokenizer`` is a Hugging Face tokenizer (fast, with a `tokenizers` backend), a
        tiktoken-style encoding (``decode_single_token_bytes``), or a :class:`Vocabulary`
        (returned as is). ``vocab_size`` is the model's logits width when it exceeds the
        tokenizer. ``generation_config`` (a ``GenerationConfig``, a dict, or a model holding
        one) adds its ``eos_token_id`` (an int or a list); ``eos_ids`` adds more.
        """
        if isinstance(tokenizer, Vocabulary):
            return tokenizer
        extra_eos = list(eos_ids or ()) + _generation_eos(generation_config)
        if hasattr(tokenizer, "backend_tokenizer"):
            return _from_hf_fast(tokenizer, vocab_size, extra_eos)
        if hasattr(tokenizer, "decode_single_token_bytes"):
            return _from_tiktoken(tokenizer, vocab_size, extra_eos)
        raise ModelLoadError(
            f"cannot read token bytes from a {type(tokenizer).__name__}: pass a Hugging Face fast "
            "tokenizer, a tiktoken encoding, or a regexlm.index.Vocabulary"
        )


def _checked_ids(ids: Iterable[int], size: int, what: str) -> list[int]:
    out: list[int] = []
    for i in ids:
        i = int(i)
        if not 0 <= i < size:
            raise ValueError(f"{what} id {i} is outside the vocabulary (size {size})")
        if i not in out:
            out.append(i)
    return out


def _generation_eos(config) -> list[int]:
    if config is None:
        return []
    if hasattr(config, "generation_config") and not isinstance(config, dict):
        config = config.generation_config
    value = (
        config.get("eos_token_id")
        if isinstance(config, dict)
        else getattr(config, "eos_token_id", None)
    )
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


def _from_hf_fast(tokenizer, vocab_size: int | None, extra_eos: list[int]) -> Vocabulary:
    backend = tokenizer.backend_tokenizer
    try:
        family, details = fam.detect_backend_family(backend)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    pieces = backend.get_vocab(with_added_tokens=True)  # piece -> id
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    top = max([*pieces.values(), *added.keys(), -1]) + 1
    size = max(top, len(tokenizer), vocab_size or 0)
    token_bytes = [b""] * size
    fallback = details["byte_fallback"]
    for piece, i in pieces.items():
        token_bytes[i] = fam.piece_bytes(family, piece, fallback)
    special: set[int] = set()
    for i, tok in added.items():
        # An added token's content goes through the same decoder as any other piece.
        token_bytes[i] = fam.piece_bytes(family, str(tok), fallback)
        if getattr(tok, "special", False):
            special.add(int(i))
    special.update(int(i) for i in getattr(tokenizer, "all_special_ids", ()) or ())
    for name in ("eos_token_id", "bos_token_id", "pad_token_id", "unk_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            special.add(value)
    eos = []
    if isinstance(getattr(tokenizer, "eos_token_id", None), int):
        eos.append(tokenizer.eos_token_id)
    eos += extra_eos
    return Vocabulary(
        token_bytes,
        eos,
        special,
        family=family,
        strips_leading_space=details["strips_leading_space"],
    )


def _from_tiktoken(encoding, vocab_size: int | None, extra_eos: list[int]) -> Vocabulary:
    specials = dict(getattr(encoding, "_special_tokens", {}) or {})
    n = int(getattr(encoding, "n_vocab", 0))
    size = max(n, vocab_size or 0, max(specials.values(), default=-1) + 1)
    token_bytes = [b""] * size
    for i in range(n):
        if i in specials.values():
            continue
        try:
            token_bytes[i] = encoding.decode_single_token_bytes(i)
        except KeyError:  # holes in the id space
            token_bytes[i] = b""
    for text, i in specials.items():
        token_bytes[i] = text.encode("utf-8")
    eos = [encoding.eot_token] if getattr(encoding, "eot_token", None) is not None else []
    return Vocabulary(token_bytes, eos + extra_eos, specials.values(), family=fam.RAW_BYTES)
