"""`RegexLogitsProcessor` inside transformers' own `generate` loop: greedy and sampled, batched."""

from __future__ import annotations

import re

import pytest
import regex
import torch
from transformers import LogitsProcessorList

from regexlm.generation import GenerationRequest, RegexLogitsProcessor
from tests.generation.oracles import forbidden_ids

CASES = [
    (r"\d{4}-\d{2}-\d{2}", 12),
    (r"[a-z]+@[a-z]+\.com", 5),
    (r"(red|green|blue)", 4),
    (r"[αβγ]+ (été|日本)", 8),
    ([r"[0-9]{3}", r"(yes|no)"], 6),
    (r"[a-z]{0,3}", 4),  # matches the empty text: one token is still generated
]
MODES = {
    "greedy": dict(do_sample=False),
    "sampled": dict(do_sample=True, temperature=1.5, top_k=0, top_p=1.0),
    "sampled-top-k-top-p": dict(do_sample=True, temperature=0.8, top_k=20, top_p=0.9),
}


def _generate(model, tokenizer, prompts, processor, max_new_tokens, **mode):
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        logits_processor=LogitsProcessorList([processor]),
        **mode,
    )
    return [row[enc.input_ids.shape[1] :] for row in out.tolist()]


def _strip_end(row, eos):
    if eos in row:
        row = row[: row.index(eos)]
    return row


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pattern, budget", CASES)
def test_outputs_match_in_transformers_generate(tiny_model, pattern, budget, mode):
    model, tokenizer = tiny_model
    patterns = [pattern] if isinstance(pattern, str) else pattern
    torch.manual_seed(0)
    processor = RegexLogitsProcessor(pattern, tokenizer, max_new_tokens=budget)
    rows = _generate(model, tokenizer, ["The answer is ", "Hi"], processor, budget, **MODES[mode])
    assert len(rows) == 2
    for row in rows:
        ids = _strip_end(row, tokenizer.eos_token_id)
        assert not set(ids) & forbidden_ids(tokenizer)
        text = tokenizer.decode(ids)
        assert any(re.fullmatch(p, text) for p in patterns), text


def test_greedy_agrees_with_the_generator(tiny_model, tiny_generator):
    model, tokenizer = tiny_model
    for pattern, budget in CASES:
        processor = RegexLogitsProcessor(pattern, tokenizer, max_new_tokens=budget)
        rows = _generate(
            model, tokenizer, ["The answer is ", "Hi"], processor, budget, do_sample=False
        )
        ours = tiny_generator.generate_batch(
            [
                GenerationRequest(
                    p, pattern, temperature=0, max_new_tokens=budget, repetition_penalty=1.0
                )
                for p in ["The answer is ", "Hi"]
            ]
        )
        for row, result in zip(rows, ours, strict=True):
            assert _strip_end(row, tokenizer.eos_token_id) == result.token_ids


def test_continues_after_match_until_eos_when_asked(tiny_model):
    model, tokenizer = tiny_model
    processor = RegexLogitsProcessor(
        r"[a-z]{2,6}", tokenizer, stop_after_match=False, max_new_tokens=10
    )
    rows = _generate(model, tokenizer, ["x", "yy"], processor, 10, do_sample=False)
    for row in rows:
        text = tokenizer.decode(_strip_end(row, tokenizer.eos_token_id))
        assert re.fullmatch(r"[a-z]{2,6}", text)


def test_processor_instance_is_reusable(tiny_model):
    model, tokenizer = tiny_model
    processor = RegexLogitsProcessor(r"[0-9]{3}", tokenizer, max_new_tokens=6)
    for prompts in (["a"], ["a much longer prompt than before", "b"], ["c"]):
        for row in _generate(model, tokenizer, prompts, processor, 6, do_sample=False):
            text = tokenizer.decode(_strip_end(row, tokenizer.eos_token_id))
            assert re.fullmatch(r"[0-9]{3}", text)


@pytest.mark.parametrize("penalty", [0.7, 1.5, 3.0])
def test_repetition_penalty_agrees_with_transformers(tiny_model, tiny_generator, penalty):
    """Greedy with transformers' own repetition penalty over prompt + generated ids gives the
    Generator's tokens: same seen set, same rule."""
    model, tokenizer = tiny_model
    prompt = "abc abc abc 123 123"
    for pattern, budget in [(r"[a-z0-9 ]{12}", 12), (r"[a-z]+@[a-z]+\.com", 8)]:
        processor = RegexLogitsProcessor(pattern, tokenizer, max_new_tokens=budget)
        row = _generate(
            model,
            tokenizer,
            [prompt],
            processor,
            budget,
            do_sample=False,
            repetition_penalty=penalty,
        )[0]
        ours = tiny_generator.generate(
            prompt, pattern, temperature=0, max_new_tokens=budget, repetition_penalty=penalty
        )
        assert _strip_end(row, tokenizer.eos_token_id) == ours.token_ids


# --- one instance across generate calls ------------------------------------------------------


def _generate_ids(model, tokenizer, rows, processor, max_new_tokens, **mode):
    """Left-padded token-id prompts through transformers' generate: the whole output [B, L]."""
    pad = tokenizer.pad_token_id
    width = max(len(r) for r in rows)
    input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return model.generate(
        input_ids=input_ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad,
        logits_processor=LogitsProcessorList([processor]),
        do_sample=False,
        **mode,
    )


class Reused:
    """One processor over many calls, each checked against a fresh processor's output."""

    def __init__(self, model, tokenizer, pattern, **options):
        self.model, self.tokenizer = model, tokenizer
        self.pattern, self.options = pattern, options
        self.processor = RegexLogitsProcessor(pattern, tokenizer, **options)

    def run(self, rows, max_new_tokens=6):
        out = _generate_ids(self.model, self.tokenizer, rows, self.processor, max_new_tokens)
        fresh = RegexLogitsProcessor(self.pattern, self.tokenizer, **self.options)
        expected = _generate_ids(self.model, self.tokenizer, rows, fresh, max_new_tokens)
        assert out.tolist() == expected.tolist()
        width = max(len(r) for r in rows)
        eos = self.tokenizer.eos_token_id
        for row in out[:, width:].tolist():
            text = self.tokenizer.decode(_strip_end(row, eos))
            if eos in row:  # ended by the pattern: a whole match
                assert re.fullmatch(self.pattern, text), text
            else:  # cut by the budget: still a prefix of a match
                assert regex.fullmatch(self.pattern, text, partial=True), text
        return out


def test_one_instance_starts_afresh_for_every_length_relation(tiny_model):
    model, tokenizer = tiny_model
    ids = tokenizer("The answer is a number like this one", add_special_tokens=False).input_ids
    reused = Reused(model, tokenizer, r"[0-9]{2,5}", max_new_tokens=6)
    out = reused.run([ids[:4]])
    last_seen = out.shape[1] - 1  # the processor's last call saw one token less than the output
    other = [t for t in ids if t not in out[0].tolist()] * 20
    reused.run([other[: last_seen + 1]])  # exactly one longer, other text (raised before)
    reused.run([other[: 4 + 1]])
    reused.run([other[:5]])  # equal
    reused.run([other[:2]])  # shorter
    reused.run([other[:60]])  # much longer
    reused.run([ids[:3], ids[:7], other[:5]])  # the batch grows
    reused.run([ids[:7], ids[:2]])  # and shrinks
    out = reused.run([ids[:5]], max_new_tokens=6)
    reused.run([out[0].tolist()], max_new_tokens=6)  # the last output itself, fed back


def test_feeding_an_output_back_starts_afresh_when_the_loop_must_have_ended(tiny_model):
    model, tokenizer = tiny_model
    ids = tokenizer("Numbers: 1 2 3", add_special_tokens=False).input_ids
    # Every row ended with EOS (stop_after_match): transformers stopped there.
    reused = Reused(model, tokenizer, r"[0-9]")
    out = reused.run([ids, ids[:3]], max_new_tokens=4)
    assert all(tokenizer.eos_token_id in row for row in out.tolist())
    reused.run(out.tolist(), max_new_tokens=4)
    # The budget was spent: the processor was told max_new_tokens.
    reused = Reused(model, tokenizer, r"[0-9]{8}", max_new_tokens=3)
    out = reused.run([ids], max_new_tokens=3)
    reused.run(out.tolist(), max_new_tokens=3)


def test_reset_covers_the_one_case_the_inputs_cannot_tell(tiny_model):
    """Without max_new_tokens on the processor and without EOS, a call whose prompt is the last
    output is what the same loop's next step would look like; reset() says it is not."""
    model, tokenizer = tiny_model
    ids = tokenizer("Numbers: 1 2 3", add_special_tokens=False).input_ids
    pattern = r"[0-9]{12}"
    processor = RegexLogitsProcessor(pattern, tokenizer)
    out = _generate_ids(model, tokenizer, [ids], processor, 3)
    processor.reset()
    again = _generate_ids(model, tokenizer, out.tolist(), processor, 3)
    fresh = _generate_ids(
        model, tokenizer, out.tolist(), RegexLogitsProcessor(pattern, tokenizer), 3
    )
    assert again.tolist() == fresh.tolist()


def test_rows_reordered_between_steps_are_refused(tiny_model):
    model, tokenizer = tiny_model
    processor = RegexLogitsProcessor(r"[a-z]{5}", tokenizer)
    scores = torch.zeros(2, len(tokenizer))
    a, b = tokenizer("ab cd", add_special_tokens=False).input_ids[:2]
    x = tokenizer("x", add_special_tokens=False).input_ids[0]
    processor(torch.tensor([[a, a], [b, b]]), scores)
    processor(torch.tensor([[a, a, x], [b, b, x]]), scores)  # the same loop, one step on
    with pytest.raises(ValueError, match="beam search"):
        processor(torch.tensor([[b, b, x, x], [a, a, x, x]]), scores)
