"""Independent checks of a Completion: Python's `re` and the `regex` package, never regexlm's DFA.

Token bytes are recovered here from the tokenizer's own token strings through the byte-level
BPE alphabet (written out below), not from regexlm's vocabulary layer, so the text a test
checks is the text the tokenizer says the ids spell.
"""

from __future__ import annotations

import re
from functools import lru_cache

import regex

# Constructs whose meaning differs between `re` and `regex` (Unicode classes, word boundaries,
# case folding): where a pattern uses one, the partial-match oracle is not trusted.
_UNSHARED = re.compile(r"\\[wWdDsSbB]|\(\?[a-zA-Z]*[iLu]")


@lru_cache(maxsize=1)
def _byte_of_char() -> dict[str, int]:
    """The byte-level BPE alphabet, inverted: every byte 0..255 is drawn as one character."""
    direct = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {chr(b): b for b in direct}
    extra = 0
    for b in range(256):
        if b not in direct:
            table[chr(0x100 + extra)] = b
            extra += 1
    return table


def token_bytes(tokenizer, token_ids: list[int]) -> list[bytes]:
    """The exact bytes of each token id of a byte-level BPE tokenizer."""
    alphabet = _byte_of_char()
    return [
        bytes(alphabet[ch] for ch in piece) for piece in tokenizer.convert_ids_to_tokens(token_ids)
    ]


def forbidden_ids(tokenizer) -> set[int]:
    """Special and added tokens: never part of a completion."""
    ids = set(tokenizer.all_special_ids)
    ids.update(int(i) for i in tokenizer.added_tokens_decoder)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def complete_text(data: bytes) -> str | None:
    """``data`` as text when it is whole UTF-8, else None."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def matching_index(patterns, text: str) -> int | None:
    for i, pattern in enumerate(patterns):
        if re.fullmatch(pattern, text):
            return i
    return None


def partial_oracle_applies(patterns) -> bool:
    return not any(_UNSHARED.search(p) for p in patterns)


def is_viable(patterns, text: str) -> bool:
    """Some pattern matches a string that starts with ``text`` (the `regex` package's partial)."""
    return any(regex.fullmatch(p, text, partial=True) is not None for p in patterns)


def check_completion(result, request, tokenizer, *, min_tokens: int | None = None) -> None:
    """Assert every rule of the Semantics contract on one result.

    ``min_tokens`` (an upper bound on the fewest tokens that spell a match, when known) turns on
    the budget rule: within the budget, the result must match.
    """
    patterns = request.patterns
    ids = result.token_ids
    assert result.stop_reason in ("pattern_match", "token_limit")
    assert result.tokens_generated == len(ids) <= request.max_new_tokens
    assert not (set(ids) & forbidden_ids(tokenizer)), "special or EOS token in the completion"

    pieces = token_bytes(tokenizer, ids)
    data = b"".join(pieces)
    assert result.completion == data.decode("utf-8", errors="replace")
    assert tokenizer.decode(ids) == result.completion

    text = complete_text(data)
    expected = None if text is None else matching_index(patterns, text)
    assert result.matched == (expected is not None), (result, expected)
    assert result.pattern_index == expected
    if result.stop_reason == "pattern_match":
        assert result.matched
    else:
        assert result.tokens_generated == request.max_new_tokens
    if min_tokens is not None and min_tokens <= request.max_new_tokens:
        assert result.matched, f"a match fits in {min_tokens} tokens but none was produced"

    # Every prefix at a token boundary (whole characters only) is viable; with
    # stop_after_match, none but the last is a match.
    check_partial = partial_oracle_applies(patterns)
    prefix = b""
    for k, piece in enumerate(pieces, start=1):
        prefix += piece
        prefix_text = complete_text(prefix)
        if prefix_text is None:
            continue
        if check_partial:
            assert is_viable(patterns, prefix_text), (prefix_text, patterns)
        if request.stop_after_match and k < len(pieces):
            assert matching_index(patterns, prefix_text) is None, (
                f"text matched after {k} tokens but generation went on: {prefix_text!r}"
            )
    if request.stop_after_match and result.matched:
        assert result.stop_reason == "pattern_match"
