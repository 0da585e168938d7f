"""Shared pieces for the generation tests: one Generator over the tiny model for the session,
and realistic patterns, each with an example string that matches it."""

from __future__ import annotations

import pytest

# (pattern, an example it matches): the example's token count bounds the fewest tokens to a match.
REALISTIC = [
    (r"\d{4}-\d{2}-\d{2}", "2024-05-17"),
    (r"[a-z]+@[a-z]+\.com", "a@b.com"),
    (r"\(\d{3}\) \d{3}-\d{4}", "(555) 123-4567"),
    (r"((25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])", "1.2.3.4"),
    (r'\{"name": "[A-Za-z ]{1,10}", "age": [0-9]{1,3}\}', '{"name": "A", "age": 1}'),
    (r"(red|green|blue)", "red"),
    (r"(?i)(yes|no)", "no"),
    (r"[αβγ]+ (été|naïve|日本)", "α été"),
    (r"[😀-😎]{1,3}", "😀"),
    (r"(?s).{3}", "abc"),
    (r"[^\n]{0,5}", ""),
    (r".*prompt$", "prompt"),
    (r"-?[0-9]+(\.[0-9]+)?", "1"),
    (r"([01][0-9]|2[0-3]):[0-5][0-9]", "00:00"),
    (r"[A-Z][a-z]+( [A-Z][a-z]+)*", "Ab"),
    (r"\w+ \w+", "a b"),
    (r"[0-9a-f]{8}", "deadbeef"),
    (r"(true|false|null|-?[0-9]{1,4})", "null"),
]


@pytest.fixture(scope="session")
def tiny_generator(tiny_model):
    from regexlm.generation import Generator

    model, tokenizer = tiny_model
    return Generator(model, tokenizer, backend="torch")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Decode steps are tiny: on a shared machine one thread is several times faster than a
    contended pool. Restored after each module, so other layers' tests are unaffected."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
