"""The decode loop: many prompts, each under its own pattern, decoded together.

A batch goes through the model as one padded tensor. Prompts have different lengths, so they are
*left*-padded: every row's last prompt token sits in the last column, and the logits for the next
token of every row are read from the same place. Padding is hidden from the model by the attention
mask, and position ids count only real tokens, so a row sees exactly what it would see alone.

After one prefill over the prompts, each iteration is:

1. ``sample``  -- one :func:`regexlm.ops.sample_step` for all live rows: grammar mask, budget
   mask, penalty, temperature, top-k, top-p, draw, automaton advance, all on the device. Rows of
   different patterns read their own tables in the same call; each index first builds the rows
   of states decoding reaches for the first time (see :mod:`regexlm.index.token_index`).
2. ``accept``  -- one transfer of the drawn tokens to the host, where each row appends its token,
   its bytes and its text delta, and the stop rules decide whether the row is done.
3. ``compact`` -- finished rows leave the batch: every per-row tensor and the KV cache keep only
   the live rows, so the cost of a step follows the rows still decoding.
4. ``decode``  -- one forward pass of the new tokens against the KV cache.

Per-row state on the device (``B`` live rows, ``T`` positions so far, ``V`` logits width)::

    attention_mask  int64[B, T]    1 for real tokens, 0 for left padding
    next_position   int64[B]       position id of the row's next token (real tokens so far)
    states          int32[B]       index state after the text so far (in the row's own index)
    budgets         int32[B]       tokens left, the one being drawn included
    seen            bool[B, V]     prompt and generated ids, for the repetition penalty
                                   (None when no row has a penalty)

Randomness is per row (:mod:`regexlm.generation.randomness`): the step draws each row's numbers
inside the kernel from the row's seed and its own step count, so a seeded request gives the same
tokens whatever else shares its batch, and no noise tensor crosses from the host. The model
calls themselves (padding, the cache argument, dropping rows from the cache) live in
:mod:`regexlm.generation.model_calls`.

Stop rules, applied after each accepted token (``s`` is the row's new state):

* ``s`` matches and ``stop_after_match``                  -> ``pattern_match``
* ``s`` matches and no token but EOS can follow (dead end) -> ``pattern_match``
* the budget is spent                                      -> ``token_limit``

and when the step drew end-of-sequence (allowed only where the text matches) the row ends with
``pattern_match`` without appending it. A row left with no allowed token at a non-matching state
cannot happen with a pruned index; if it does, the row ends as ``token_limit`` and a warning is
logged, rather than emitting a token the pattern does not allow.
"""

from __future__ import annotations

import logging
import time
from concurrent import futures
from dataclasses import dataclass, field

import torch

from regexlm.generation import model_calls
from regexlm.generation.completion import PATTERN_MATCH, TOKEN_LIMIT, Completion
from regexlm.generation.constraint import Constraint
from regexlm.generation.randomness import row_seed, step_counters
from regexlm.generation.request import GenerationRequest
from regexlm.generation.text import TextStream
from regexlm.index.settler import settle_in_background, worth_overlapping

logger = logging.getLogger("regexlm.generation")


@dataclass
class RowSpec:
    """Everything the loop needs to know about one row before it starts."""

    request: GenerationRequest
    constraint: Constraint
    prompt_ids: list[int]
    compile_s: float = 0.0


@dataclass
class _Row:
    """One row's progress, kept on the host."""

    number: int  # position in the caller's request list
    spec: RowSpec
    state: int  # in the row's own index
    seed: int  # of the row's random stream (regexlm.generation.randomness); 0 when greedy
    token_ids: list[int] = field(default_factory=list)
    text: TextStream = field(default_factory=TextStream)
    stop_reason: str | None = None
    decode_s: float = 0.0
    error: Exception | None = None  # a failure confined to this row (see _fail)

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None


@dataclass
class _Batch:
    """The live rows and their device tensors, aligned on dimension 0."""

    rows: list[_Row]
    logits: torch.Tensor | None  # [B, V] fp32/bf16, for the step about to be sampled
    tokens: torch.Tensor | None  # [B] int64, the tokens drawn by the last step
    attention_mask: torch.Tensor  # [B, T] int64
    next_position: torch.Tensor  # [B] int64
    states: torch.Tensor  # [B] int32
    budgets: torch.Tensor  # [B] int32
    temperature: torch.Tensor  # [B] fp32
    top_k: torch.Tensor  # [B] int32
    top_p: torch.Tensor  # [B] fp32
    repetition_penalty: torch.Tensor  # [B] fp32
    seen: torch.Tensor | None  # [B, V] bool
    cache: object  # the model's KV cache, batch on dimension 0

    _PER_ROW = (
        "logits",
        "tokens",
        "attention_mask",
        "next_position",
        "states",
        "budgets",
        "temperature",
        "top_k",
        "top_p",
        "repetition_penalty",
        "seen",
    )

    def keep(self, positions: list[int]) -> None:
        """Keep only the rows at ``positions`` (in order), in every tensor and the cache."""
        if len(positions) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in positions]
        if not positions:
            return
        index = torch.tensor(positions, dtype=torch.long, device=self.states.device)
        for name in self._PER_ROW:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, index))
        model_calls.select_cache_rows(self.cache, index)


def run_batch(
    model,
    specs: list[RowSpec],
    *,
    token_bytes: list[bytes],
    pad_id: int,
    device: torch.device,
    backend: str = "auto",
    on_token=None,
    should_stop=None,
) -> list[Completion]:
    """Decode every row of ``specs`` to its end; return one Completion per row, in order (or,
    for a row that failed alone, the exception that ended it)."""
    from regexlm import ops

    rows = [
        _Row(
            number=i,
            spec=spec,
            state=spec.constraint.start_state,
            seed=row_seed(spec.request.temperature, spec.request.seed),
        )
        for i, spec in enumerate(specs)
    ]
    input_ids, attention_mask = model_calls.left_pad([s.prompt_ids for s in specs], pad_id, device)

    started = time.perf_counter()
    settling = None  # the explorations compile left for new indexes, beside the prefill
    if worth_overlapping(device):
        settling = settle_in_background([s.constraint.index for s in specs])
    logits, cache = model_calls.prefill(model, input_ids, attention_mask)  # logits: [B, V]
    vocab_width = logits.shape[1]
    model_calls.synchronize(device)
    if settling is not None:
        futures.wait([settling])  # a failure is raised again for its own rows by the step
    prefill_s = time.perf_counter() - started
    decode_started = time.perf_counter()

    batch = _Batch(
        rows=list(rows),
        logits=logits,
        tokens=None,
        attention_mask=attention_mask,
        next_position=attention_mask.sum(dim=1),  # [B]
        states=_column([r.state for r in rows], torch.int32, device),
        budgets=_column([s.request.max_new_tokens for s in specs], torch.int32, device),
        temperature=_column([float(s.request.temperature) for s in specs], torch.float32, device),
        top_k=_column([s.request.top_k for s in specs], torch.int32, device),
        top_p=_column([float(s.request.top_p) for s in specs], torch.float32, device),
        repetition_penalty=_column(
            [float(s.request.repetition_penalty) for s in specs], torch.float32, device
        ),
        seen=(
            _seen_from_prompts([s.prompt_ids for s in specs], vocab_width, device)
            if any(s.request.repetition_penalty != 1.0 for s in specs)
            else None
        ),
        cache=cache,
    )

    step = 0
    while batch.rows:
        if should_stop is not None:
            _poll_should_stop(batch, should_stop, decode_started)
            _compact(batch)
            if not batch.rows:
                break
        _build_rows(batch, decode_started)
        if not batch.rows:
            break
        tokens, next_states, no_allowed = _sample(batch, step, vocab_width, backend, ops)
        if batch.seen is not None:
            ops.update_seen(batch.seen, tokens)
        batch.tokens = tokens
        batch.states = next_states
        batch.budgets = batch.budgets - 1
        _accept(batch, tokens, next_states, no_allowed, token_bytes, on_token, decode_started)
        _compact(batch)
        step += 1
        if not batch.rows:
            break
        batch.logits = _decode(model, batch)  # logits: [B, V]

    return [row.error or _completion(row, prefill_s) for row in rows]


# --- the steps -------------------------------------------------------------------------------


def _decode(model, batch: _Batch) -> torch.Tensor:
    """Feed each live row's new token; return the next logits [B, V]."""
    ones = torch.ones_like(batch.attention_mask[:, :1])  # [B, 1]
    batch.attention_mask = torch.cat([batch.attention_mask, ones], dim=1)  # [B, T+1]
    position_ids = batch.next_position.unsqueeze(1)  # [B, 1]
    batch.next_position = batch.next_position + 1
    logits, batch.cache = model_calls.step(
        model, batch.tokens, batch.attention_mask, position_ids, batch.cache
    )
    return logits  # [B, V]


def _build_rows(batch: _Batch, decode_started: float) -> None:
    """Have each index build the rows of the states its rows are in. An index that cannot (its
    automaton hit a limit, say) fails its own rows, which leave the batch; the others go on."""
    groups: dict[int, list[_Row]] = {}
    for row in batch.rows:
        groups.setdefault(id(row.spec.constraint.index), []).append(row)
    failed = False
    for rows in groups.values():
        try:
            rows[0].spec.constraint.index.ensure_rows([row.state for row in rows])
        except Exception as exc:  # this pattern's rows cannot go on; the batch can
            failed = True
            for row in rows:
                _fail(row, exc, decode_started)
    if failed:
        _compact(batch)


def _sample(batch: _Batch, step: int, vocab_width: int, backend: str, ops):
    """One sampling step for all live rows: tokens int64[B], next states int32[B], no_allowed.

    One call for the batch. Rows of different patterns read their own index's tables
    (:class:`regexlm.ops.TableGroups`): the torch step masks each pattern's rows with its
    tables and runs the rest once for all; the fused kernels run once per pattern. Each index
    first builds the rows of the states its rows are in (on the host; on a GPU this runs while
    the forward pass queued just before is still computing), then the step reads its current
    tables.
    """
    # each row's own stream: its seed, and its step = the tokens it has generated so far
    seeds, steps = step_counters(
        [row.seed for row in batch.rows],
        [len(row.token_ids) for row in batch.rows],
        batch.states.device,
    )  # [B] int64, [B] int32
    groups: dict[int, list[int]] = {}
    for b, row in enumerate(batch.rows):
        groups.setdefault(id(row.spec.constraint.index), []).append(b)
    indexes = [batch.rows[positions[0]].spec.constraint.index for positions in groups.values()]
    for index, positions in zip(indexes, groups.values(), strict=True):
        index.ensure_rows([batch.rows[b].state for b in positions])
    if len(indexes) == 1:
        tables = indexes[0].tables()
    else:
        tables = ops.TableGroups(
            tuple(index.tables() for index in indexes),
            tuple(tuple(positions) for positions in groups.values()),
        )
    result = ops.sample_step(
        batch.logits,
        batch.states,
        batch.budgets,
        batch.temperature,
        batch.top_k,
        batch.top_p,
        batch.repetition_penalty,
        batch.seen,
        tables,
        seeds=seeds,
        steps=steps,
        backend=backend,
    )
    return result.tokens, result.next_states, result.no_allowed


def _accept(batch, tokens, next_states, no_allowed, token_bytes, on_token, decode_started):
    """Bring the step's tokens to the host and apply them row by row: the stop rules live here."""
    # One transfer for the three results: [3, B] -> lists.
    host = torch.stack([tokens, next_states.to(torch.long), no_allowed.to(torch.long)]).tolist()
    for row, token, state, stuck in zip(batch.rows, *host, strict=True):
        constraint = row.spec.constraint
        request = row.spec.request
        if stuck:
            if constraint.is_match(row.state):
                _finish(row, PATTERN_MATCH, decode_started)
            else:
                logger.warning(
                    "no token is allowed at a non-matching state (pattern %r, state %d); "
                    "ending the row",
                    constraint.patterns,
                    row.state,
                )
                _finish(row, TOKEN_LIMIT, decode_started)
            continue
        if token in constraint.eos_ids:
            if not constraint.is_match(row.state):
                logger.warning("end-of-sequence drawn at a non-matching state; ending the row")
                _finish(row, TOKEN_LIMIT, decode_started)
            else:
                _finish(row, PATTERN_MATCH, decode_started)
            continue

        row.state = state
        row.token_ids.append(token)
        if constraint.is_match(state) and (
            request.stop_after_match or constraint.is_dead_end(state)
        ):
            _finish(row, PATTERN_MATCH, decode_started)
        elif len(row.token_ids) >= request.max_new_tokens:
            _finish(row, TOKEN_LIMIT, decode_started)
        delta = row.text.push(token_bytes[token], final=row.finished)
        if on_token is not None:
            try:
                on_token(row.number, token, delta)
            except Exception as exc:  # the caller's callback failed for this row alone
                _fail(row, exc, decode_started)


def _poll_should_stop(batch: _Batch, should_stop, decode_started: float) -> None:
    for row in batch.rows:
        if should_stop(row.number):
            _finish(row, TOKEN_LIMIT, decode_started)


def _compact(batch: _Batch) -> None:
    batch.keep([b for b, row in enumerate(batch.rows) if not row.finished])


def _finish(row: _Row, reason: str, decode_started: float) -> None:
    row.stop_reason = reason
    row.decode_s = time.perf_counter() - decode_started


def _fail(row: _Row, error: Exception, decode_started: float) -> None:
    """End one row with an error that concerns it alone; the batch decodes on without it, and
    the row's place in the result holds the error instead of a Completion."""
    row.error = error
    if not row.finished:
        _finish(row, TOKEN_LIMIT, decode_started)


def _completion(row: _Row, prefill_s: float) -> Completion:
    match = row.spec.constraint.match_of(row.state)
    return Completion(
        completion=row.text.text,
        tokens_generated=len(row.token_ids),
        stop_reason=row.stop_reason or TOKEN_LIMIT,
        matched=match >= 0,
        pattern_index=match if match >= 0 else None,
        token_ids=list(row.token_ids),
        timings={"compile_s": row.spec.compile_s, "prefill_s": prefill_s, "decode_s": row.decode_s},
    )


# --- helpers ---------------------------------------------------------------------------------


def _seen_from_prompts(prompts: list[list[int]], vocab_width: int, device) -> torch.Tensor:
    """bool[B, V]: which ids each prompt holds (the repetition penalty's starting set)."""
    seen = torch.zeros((len(prompts), vocab_width), dtype=torch.bool)
    for b, ids in enumerate(prompts):
        valid = [i for i in ids if 0 <= i < vocab_width]
        if valid:
            seen[b, torch.tensor(valid, dtype=torch.long)] = True
    return seen.to(device)


def _column(values, dtype, device) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).to(device)
