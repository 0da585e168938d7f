"""Independent checks of one constrained vLLM output: Python's `re` and the `regex` package on the
bytes the tokenizer says the ids spell (never regexlm's automaton)."""

from __future__ import annotations

from tests.generation.oracles import (
    complete_text,
    forbidden_ids,
    is_viable,
    matching_index,
    partial_oracle_applies,
    token_bytes,
)


def check_output(
    output,
    patterns: list[str],
    *,
    max_tokens: int,
    stop_after_match: bool,
    tokenizer,
    min_tokens: int | None = None,
) -> bool:
    """Assert the Semantics contract on one ``CompletionOutput``; return whether it matched.

    ``min_tokens`` (the token count of a known match, so an upper bound on the fewest) turns on
    the budget rule: when it fits in ``max_tokens``, the output must match.
    """
    ids = list(output.token_ids)
    eos = tokenizer.eos_token_id
    ended_by_eos = bool(ids) and ids[-1] == eos
    if ended_by_eos:
        ids = ids[:-1]
    special = forbidden_ids(tokenizer)
    assert not special.intersection(ids), (patterns, output)
    pieces = token_bytes(tokenizer, ids)
    data = b"".join(pieces)
    text = complete_text(data)
    matched = text is not None and matching_index(patterns, text) is not None
    if ended_by_eos:
        assert output.finish_reason == "stop", output
        assert matched, (patterns, text, "end-of-sequence where the text does not match")
    else:
        assert output.finish_reason == "length", output
        assert len(ids) == max_tokens, output
    if not matched and text is not None and partial_oracle_applies(patterns):
        assert is_viable(patterns, text), (patterns, text, "not a prefix of any match")
    if stop_after_match:
        # The request ends at the first token after which the text matches.
        prefix = b""
        for piece in pieces[:-1]:
            prefix += piece
            shown = complete_text(prefix)
            assert shown is None or matching_index(patterns, shown) is None, (patterns, shown)
        if matched:
            assert ended_by_eos or len(ids) == max_tokens
    if min_tokens is not None and min_tokens <= max_tokens:
        assert matched, (patterns, text, f"a match fits in {max_tokens} tokens")
    if text is not None:
        assert output.text in ("", text), (output.text, text)  # vLLM's own detokenized text
    return matched
