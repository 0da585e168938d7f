"""`RegexLogitsProcessor` inside transformers' own `generate` loop: greedy and sampled, batched."""

from __future__ import annotations

import re

import pytest
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
