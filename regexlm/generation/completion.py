"""What one generation returns.

``completion`` is the UTF-8 decoding of the generated tokens' bytes, concatenated. When the
text matches, those bytes are always complete UTF-8 (the automaton only accepts valid UTF-8).
A ``token_limit`` result may end inside a multi-byte character; the incomplete tail is then
decoded as U+FFFD (``errors="replace"``), exactly as the tokenizer's own ``decode`` does for a
byte-level vocabulary, so ``tokenizer.decode(token_ids) == completion`` holds either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

PATTERN_MATCH = "pattern_match"
TOKEN_LIMIT = "token_limit"
STOP_REASONS = (PATTERN_MATCH, TOKEN_LIMIT)


@dataclass
class Completion:
    """The generated text and how generation ended.

    ``stop_reason`` is ``"pattern_match"`` when generation ended because the text is a complete
    match (the first match with ``stop_after_match``, the model's end-of-sequence token, or a
    match nothing can extend) and ``"token_limit"`` when ``max_new_tokens`` ran out (or the row
    was stopped early by the caller). ``matched`` says whether the text fully matches a pattern,
    whatever the stop reason; ``pattern_index`` is the lowest index of a matching pattern.
    ``timings`` holds ``compile_s`` (pattern compilation done for this request, 0 when cached),
    ``prefill_s`` (the batch's prompt pass) and ``decode_s`` (from the prefill to this row's end).
    """

    completion: str
    tokens_generated: int
    stop_reason: str
    matched: bool
    pattern_index: int | None
    token_ids: list[int] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
