"""The logits processor without an engine: vLLM's batch updates replayed, every mask checked.

A small simulation of vLLM's persistent batch drives :class:`RegexLogitsProcessor` through both
interfaces. V1: requests are added to the lowest free slot (or appended), finished or preempted
ones removed, holes filled by moving the last rows down, rows swapped, preempted requests
resumed with the tokens they had; ``update_state`` gets exactly those updates. V2: requests enter
free slots through ``add_request`` and rows map to slots in a fresh order every step. After each
step every row's mask is compared with an oracle that walks the request's tokens through the
token index at the token level (no classes), then each row draws an allowed token at random.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

from regexlm.vllm.processor import RegexLogitsProcessor

PATTERNS = [
    r"\d{4}-\d{2}-\d{2}",
    r"[a-z]+@[a-z]+\.com",
    r"(yes|no)",
    r"[αβγ]+ (été|naïve|日本)",
    r"(?s).{0,6}",
    r"[0-9a-f]{8}",
    r"(red|green|blue)( (red|green|blue))*",
]
MAX_MODEL_LEN = 64
VOCAB_SIZE = 49152


@pytest.fixture(scope="module")
def vocabulary(smollm2_tokenizer):
    from regexlm.index import Vocabulary

    return Vocabulary.from_tokenizer(smollm2_tokenizer, vocab_size=VOCAB_SIZE)


@pytest.fixture(scope="module")
def indexes(vocabulary):
    import regexlm

    return {p: regexlm.compile(p, vocabulary, device="cpu") for p in PATTERNS}


def _processor_over(vocabulary):
    """A processor class whose model's vocabulary is ``vocabulary``."""

    class Processor(RegexLogitsProcessor):
        def load_vocabulary(self):
            return vocabulary

    return Processor


def make_processor(vocabulary, *args, row_biases=None, build=True, slot_bias_bytes=None):
    config = SimpleNamespace(
        model_config=SimpleNamespace(max_model_len=MAX_MODEL_LEN), speculative_config=None
    )
    processor = _processor_over(vocabulary)(config, *args)
    if build:
        processor.patterns  # noqa: B018 - makes the masker
        # None: the CPU's per-row biases; False: the accelerators' batched gather and masked fill
        processor._masker.row_biases = row_biases
        if slot_bias_bytes is not None:  # 0: the CPU adds row by row, without the slot matrix
            processor._masker.slot_bias_bytes = slot_bias_bytes
    return processor


@dataclass(eq=False)
class Request:
    pattern: str | None
    stop_after_match: bool
    max_tokens: int
    prompt_len: int
    output: list[int] = field(default_factory=list)
    finished: bool = False

    @property
    def params(self):
        extra = None
        if self.pattern is not None:
            extra = {"regex": self.pattern, "stop_after_match": self.stop_after_match}
        return SimpleNamespace(extra_args=extra, max_tokens=self.max_tokens)


def expected_allowed(request: Request, index, eos_ids) -> torch.Tensor:
    """bool[V]: the tokens the request may draw next, at the token level."""
    state, done = index.start_state, False
    for token in request.output:
        if token in eos_ids:
            done = True
            break
        state = index.next_state(state, token)
        assert state >= 0
        if request.stop_after_match and index.is_match(state):
            done = True
    if done:
        allowed = torch.zeros(VOCAB_SIZE, dtype=torch.bool)
        allowed[list(eos_ids)] = True
        return allowed
    index.ensure_rows([state])
    nxt = index.rows_of([state])[0, index.class_of.long()].long()  # [V]
    allowed = nxt >= 0
    left = min(request.max_tokens, MAX_MODEL_LEN - request.prompt_len) - len(request.output)
    min_tokens = index.min_tokens.long()
    if min_tokens[state] <= left:
        allowed &= min_tokens[nxt.clamp(min=0)] <= left - 1
    return allowed


def check_and_draw(logits, masked, requests_by_row, indexes, eos_ids, rng):
    """Compare each row with the oracle; append a drawn token to each request."""
    for row, request in requests_by_row:
        finite = torch.isfinite(masked[row])
        if request.pattern is None:
            assert torch.equal(masked[row], logits[row])  # untouched
            token = rng.randrange(VOCAB_SIZE)
        else:
            allowed = expected_allowed(request, indexes[request.pattern], eos_ids)
            assert torch.equal(finite, allowed), (request.pattern, request.output)
            choices = torch.nonzero(allowed).flatten().tolist()
            token = rng.choice(choices)
        request.output.append(token)
        limit = min(request.max_tokens, MAX_MODEL_LEN - request.prompt_len)
        if token in eos_ids or len(request.output) >= limit:
            request.finished = True


def new_request(draw, rng) -> Request:
    pattern = draw(st.sampled_from([None, *PATTERNS]))
    return Request(
        pattern=pattern,
        stop_after_match=draw(st.booleans()),
        max_tokens=draw(st.integers(1, 14)),
        prompt_len=draw(st.integers(1, MAX_MODEL_LEN - 2)),
    )


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_v1_batch_updates(data, vocabulary, indexes):
    rng = random.Random(data.draw(st.integers(0, 2**16)))
    row_biases = data.draw(st.sampled_from([None, False]))
    processor = make_processor(
        vocabulary,
        torch.device("cpu"),
        False,
        row_biases=row_biases,
        slot_bias_bytes=data.draw(st.sampled_from([None, 0])),
    )
    eos_ids = set(vocabulary.eos_ids)
    batch: list[Request] = []  # slot -> request
    preempted: list[Request] = []
    for _ in range(data.draw(st.integers(1, 14))):
        removed, added, moved = [], [], []
        # Finished requests leave; some running ones are preempted (they come back later).
        for slot, request in enumerate(batch):
            if request is None:
                continue
            if request.finished or data.draw(st.integers(0, 9)) == 0:
                if not request.finished:
                    preempted.append(request)
                batch[slot] = None
                removed.append(slot)
        holes = sorted(removed)
        for _ in range(data.draw(st.integers(0, 3))):
            if preempted and data.draw(st.booleans()):
                request = preempted.pop(data.draw(st.integers(0, len(preempted) - 1)))
            else:
                request = new_request(data.draw, rng)
            slot = holes.pop(0) if holes else len(batch)
            if slot == len(batch):
                batch.append(None)
            batch[slot] = request
            added.append((slot, request.params, [0] * request.prompt_len, request.output))
        # Condense: move the last rows into the holes.
        while None in batch:
            hole = batch.index(None)
            last = len(batch) - 1
            if batch[last] is None:
                batch.pop()
                continue
            batch[hole] = batch.pop()
            moved.append((last, hole, MoveDirectionality.UNIDIRECTIONAL))
        if len(batch) >= 2 and data.draw(st.booleans()):
            a, b = data.draw(st.permutations(range(len(batch))))[:2]
            batch[a], batch[b] = batch[b], batch[a]
            moved.append((a, b, MoveDirectionality.SWAP))
        update = BatchUpdate(len(batch), removed, added, moved)
        processor.update_state(update if (removed or added or moved) else None)
        if not batch:
            continue
        logits = torch.randn(len(batch), VOCAB_SIZE)  # [B, V]
        masked = processor.apply(logits.clone())
        check_and_draw(logits, masked, list(enumerate(batch)), indexes, eos_ids, rng)


class _Staged:
    def __init__(self, tensor):
        self.gpu = tensor


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_v2_slots_and_rows(data, vocabulary, indexes):
    rng = random.Random(data.draw(st.integers(0, 2**16)))
    max_reqs = 6
    prompt_len = SimpleNamespace(np=np.zeros(max_reqs, dtype=np.int32))
    all_tokens = torch.zeros(max_reqs, MAX_MODEL_LEN, dtype=torch.int32)
    req_states = SimpleNamespace(
        device=torch.device("cpu"), prompt_len=prompt_len, all_token_ids=_Staged(all_tokens)
    )
    processor = make_processor(
        vocabulary, req_states, row_biases=data.draw(st.sampled_from([None, False]))
    )
    eos_ids = set(vocabulary.eos_ids)
    slots: dict[int, Request] = {}
    for _ in range(data.draw(st.integers(1, 12))):
        for slot in [s for s, r in slots.items() if r.finished]:
            del slots[slot]  # V2 tells no one: the slot is simply reused later
        for _ in range(data.draw(st.integers(0, 2))):
            free = [s for s in range(max_reqs) if s not in slots]
            if not free:
                break
            slot = data.draw(st.sampled_from(free))
            request = new_request(data.draw, rng)
            slots[slot] = request
            prompt_len.np[slot] = request.prompt_len
            processor.add_request(slot, request.params)
        if not slots:
            continue
        order = data.draw(st.permutations(sorted(slots)))
        for slot in order:  # the committed tokens, as the model runner keeps them
            request = slots[slot]
            out = request.output
            all_tokens[slot, request.prompt_len : request.prompt_len + len(out)] = torch.tensor(
                out, dtype=torch.int32
            )
        ctx = SimpleNamespace(
            idx_mapping_np=np.array(order, dtype=np.int32),
            seq_lens_upper_bound_np=np.array(
                [slots[s].prompt_len + len(slots[s].output) for s in order], dtype=np.int32
            ),
        )
        logits = torch.randn(len(order), VOCAB_SIZE)
        masked = processor.apply(logits.clone(), ctx)
        check_and_draw(
            logits, masked, [(i, slots[s]) for i, s in enumerate(order)], indexes, eos_ids, rng
        )


def test_unconstrained_batches_cost_nothing(vocabulary):
    processor = make_processor(vocabulary, torch.device("cpu"), False, build=False)
    params = SimpleNamespace(extra_args={"other": 1}, max_tokens=5)
    processor.update_state(BatchUpdate(1, [], [(0, params, [1, 2], [])], []))
    logits = torch.randn(1, VOCAB_SIZE)
    assert processor.apply(logits) is logits
    assert processor._patterns is None  # nothing built: no vocabulary, no pattern
    assert processor.stats["steps"] == 0


def test_a_pattern_the_vocabulary_cannot_spell_ends_the_request(vocabulary):
    processor = make_processor(vocabulary, torch.device("cpu"), False)
    params = SimpleNamespace(extra_args={"regex": r"a\bb"}, max_tokens=5)
    processor.update_state(BatchUpdate(1, [], [(0, params, [1], [])], []))
    masked = processor.apply(torch.randn(1, VOCAB_SIZE))
    assert torch.isfinite(masked[0]).nonzero().flatten().tolist() == sorted(vocabulary.eos_ids)


def test_the_same_patterns_compile_once(vocabulary):
    processor = make_processor(vocabulary, torch.device("cpu"), False)
    added = [
        (i, SimpleNamespace(extra_args={"regex": ["a+", "b"]}, max_tokens=5), [1], [])
        for i in range(4)
    ]
    processor.update_state(BatchUpdate(4, [], added, []))
    processor.apply(torch.randn(4, VOCAB_SIZE))
    assert processor.patterns.compiles == 1
    assert processor._masker.joint_builds == 1


def test_a_second_instance_for_one_engine_stays_inert(vocabulary):
    config = SimpleNamespace(
        model_config=SimpleNamespace(max_model_len=MAX_MODEL_LEN), speculative_config=None
    )
    first = RegexLogitsProcessor(config, torch.device("cpu"), False)
    second = RegexLogitsProcessor(config, torch.device("cpu"), False)
    assert first.active and not second.active
    params = SimpleNamespace(extra_args={"regex": "a+"}, max_tokens=5)
    second.update_state(BatchUpdate(1, [], [(0, params, [1], [])], []))
    logits = torch.randn(1, VOCAB_SIZE)
    assert second.apply(logits) is logits and len(second.rows) == 0
    other = RegexLogitsProcessor(
        SimpleNamespace(model_config=config.model_config, speculative_config=None),
        torch.device("cpu"),
        False,
    )
    assert other.active  # another engine's


@pytest.mark.parametrize("named", [None, ["regexlm.vllm:RegexLogitsProcessor"]])
def test_async_scheduling_needs_the_processor_named(vocabulary, named):
    # With async scheduling, the V1 runner hands processors real output tokens only when one is
    # named in the engine's arguments; unnamed, a constrained request ends at once (and says why)
    # rather than being masked from a stale state.
    config = SimpleNamespace(
        model_config=SimpleNamespace(max_model_len=MAX_MODEL_LEN, logits_processors=named),
        scheduler_config=SimpleNamespace(async_scheduling=True),
        speculative_config=None,
    )
    processor = _processor_over(vocabulary)(config, torch.device("cpu"), False)
    params = SimpleNamespace(extra_args={"regex": "a+"}, max_tokens=5)
    processor.update_state(BatchUpdate(1, [], [(0, params, [1], [])], []))
    allowed = torch.isfinite(processor.apply(torch.randn(1, VOCAB_SIZE))[0])
    only_eos = allowed.nonzero().flatten().tolist() == sorted(vocabulary.eos_ids)
    assert only_eos == (named is None)


def _engine_config(named):
    return SimpleNamespace(
        model_config=SimpleNamespace(max_model_len=MAX_MODEL_LEN, logits_processors=named),
        speculative_config=None,
    )


@pytest.mark.parametrize(
    "named",
    [
        ["regexlm.vllm:RegexLogitsProcessor"],
        ["regexlm.vllm.processor:RegexLogitsProcessor"],
        [RegexLogitsProcessor],
    ],
)
def test_a_processor_named_in_the_engine_arguments_prepares_its_vocabulary_at_start(
    vocabulary, prepared, named
):
    Processor = _processor_over(vocabulary)
    processor = Processor(_engine_config(named), torch.device("cpu"), False)
    assert prepared == [vocabulary] and processor._patterns is not None
    assert processor.patterns.compiles == 0  # nothing of a request's was compiled
    params = SimpleNamespace(extra_args={"regex": "a+"}, max_tokens=5)
    processor.update_state(BatchUpdate(1, [], [(0, params, [1], [])], []))
    allowed = torch.isfinite(processor.apply(torch.randn(1, VOCAB_SIZE))[0])
    assert allowed.any() and prepared == [vocabulary]  # the first request prepared nothing


@pytest.mark.parametrize("named", [None, [], ["other.module:RegexLogitsProcessor"], ["x:Y"]])
def test_a_processor_from_the_entry_point_alone_builds_nothing_until_a_request(
    vocabulary, prepared, named
):
    Processor = _processor_over(vocabulary)
    processor = Processor(_engine_config(named), torch.device("cpu"), False)
    assert prepared == [] and processor._patterns is None


def test_a_vocabulary_that_fails_at_start_is_logged_and_left_to_the_first_request(caplog):
    class Processor(RegexLogitsProcessor):
        def load_vocabulary(self):
            raise OSError("no tokenizer files")

    config = _engine_config(["regexlm.vllm:RegexLogitsProcessor"])
    with caplog.at_level("ERROR", logger="regexlm.vllm"):
        processor = Processor(config, torch.device("cpu"), False)
    assert processor.active and processor._patterns is None
    assert "could not prepare" in caplog.text and "no tokenizer files" in caplog.text
    with pytest.raises(OSError, match="no tokenizer files"):
        _ = processor.patterns
