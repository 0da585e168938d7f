"""Per-row randomness: a seeded request's tokens depend on its seed alone, never on its batch.

The step computes each row's numbers from the row's seed and its own step count (see
`regexlm.generation.randomness`), so the same seeded request must give the same tokens alone, at
any position of any batch (sampled, greedy, seeded or not, other patterns and lengths), and
twice in one batch.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regexlm.generation import GenerationRequest
from regexlm.generation.randomness import row_seed, step_counters
from tests.generation.conftest import REALISTIC

SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
PROMPTS = ["", "a", "The date today is ", "Contact me at ", "日本語のテキスト"]
PATTERNS = [p for p, _ in REALISTIC]

other_request = st.builds(
    GenerationRequest,
    prompt=st.sampled_from(PROMPTS),
    pattern=st.sampled_from(PATTERNS),
    max_new_tokens=st.integers(1, 9),
    temperature=st.sampled_from([0.0, 0.7, 1.5, 30.0]),
    top_k=st.sampled_from([0, 5, 50]),
    top_p=st.sampled_from([1.0, 0.9]),
    repetition_penalty=st.sampled_from([1.0, 1.3]),
    seed=st.none() | st.integers(0, 2**63 - 1),
    stop_after_match=st.booleans(),
)


@settings(max_examples=20, **SETTINGS)
@given(
    prompt=st.sampled_from(PROMPTS),
    pattern=st.sampled_from(PATTERNS),
    seed=st.integers(0, 2**63 - 1),
    temperature=st.sampled_from([0.5, 1.0, 3.0]),
    top_k=st.sampled_from([0, 3, 50]),
    others=st.lists(other_request, max_size=4),
    position=st.integers(0, 4),
)
def test_a_seeded_request_gives_its_tokens_at_any_position_of_any_batch(
    tiny_generator, prompt, pattern, seed, temperature, top_k, others, position
):
    target = GenerationRequest(
        prompt,
        pattern,
        seed=seed,
        temperature=temperature,
        top_k=top_k,
        max_new_tokens=10,
        stop_after_match=False,
        repetition_penalty=1.1,
    )
    alone = tiny_generator.generate_batch([target])[0]
    batch = list(others)
    position = min(position, len(batch))
    batch.insert(position, target)
    together = tiny_generator.generate_batch(batch)[position]
    assert together.token_ids == alone.token_ids
    assert together.completion == alone.completion
    assert together.stop_reason == alone.stop_reason


def test_the_same_seeded_request_twice_in_one_batch_gives_the_same_tokens(tiny_generator):
    request = GenerationRequest(
        "x", r"[a-z]{12}", seed=11, temperature=30.0, top_k=0, max_new_tokens=12
    )
    other = GenerationRequest("y", r"[a-z]{12}", seed=12, temperature=30.0, top_k=0)
    first, _, second = tiny_generator.generate_batch([request, other, request])
    assert first.token_ids == second.token_ids
    # a flat temperature over 26 letters: another seed (here, the next one) differs
    assert tiny_generator.generate_batch([other])[0].token_ids[:12] != first.token_ids[:12]


def test_row_seeds_and_step_columns():
    assert row_seed(0.0, 5) == 0 and row_seed(-1.0, None) == 0 and row_seed(float("nan"), 3) == 0
    assert row_seed(0.7, 5) == 5 and row_seed(1.0, 2**64 - 1) == -1  # read mod 2^64
    fresh = {row_seed(1.0, None) for _ in range(4)}
    assert len(fresh) > 1
    seeds, steps = step_counters([3, -(2**63), 2**63 - 1], [0, 7, 2**31 - 1], "cpu")
    assert seeds.dtype == torch.int64 and steps.dtype == torch.int32
    assert seeds.tolist() == [3, -(2**63), 2**63 - 1] and steps.tolist() == [0, 7, 2**31 - 1]
