"""regexlm's constraint as a vLLM logits processor (both model runners' interfaces).

Every request whose ``SamplingParams.extra_args`` carries ``regex`` (see
:mod:`regexlm.vllm.arguments`) is constrained with regexlm's semantics: after every token the
text is a prefix of a match, end-of-sequence only where the text matches, budget-aware against
the request's ``max_tokens`` (capped by the model's context), and with ``stop_after_match``
(default true) the request ends right after the first token that makes the text match (the
processor then allows only end-of-sequence, which vLLM stops on). Other requests are untouched.

vLLM loads the class from the ``vllm.logits_processors`` entry point that installing regexlm
registers, from ``LLM(logits_processors=[RegexLogitsProcessor])`` or from
``--logits-processors regexlm.vllm:RegexLogitsProcessor``. It runs in the worker process, once
per engine. Loaded from the entry point alone, it builds nothing until the first constrained
request (vLLM loads entry-point processors into every engine, constrained or not); named in the
engine's arguments (as ``regexlm serve --engine vllm`` does), it prepares the model's vocabulary
when it is made, so that the first constrained request does not pay for it inside an engine
step, where the whole batch would wait.

vLLM has two model runners with different processor interfaces, and an entry-point processor
must satisfy whichever one runs, so the class implements both:

* **V1** (the CPU build, and GPU engines that fall back to it): ``update_state(BatchUpdate)``
  reports removed, added and moved rows of the persistent batch; ``added`` carries the
  request's output-token list, which vLLM keeps appending to; ``apply(logits)`` sees one row
  per batch slot.
* **V2** (the default on GPUs with Triton): ``add_request(slot, params)`` when a request enters
  a slot; ``apply(logits, ctx)`` with ``ctx.idx_mapping_np`` giving each row's slot and the
  committed tokens in ``req_states.all_token_ids`` (one device read per step fetches the
  tokens not consumed yet). Untested on a GPU so far: this machine has none.

Per step: fold each constrained row's new tokens into its automaton state on the host, decide
its allowed token classes, and mask the logits with one gather and one masked write
(:mod:`regexlm.vllm.masker`). A request's patterns are compiled when it is added, once per
distinct pattern list (:mod:`regexlm.vllm.patterns`, a bounded LRU); a pattern that cannot be
compiled for the model (vLLM's frontend checked its syntax already; what remains is a pattern
no text of the model's tokens can match, or one past the compile limits) ends its request at
the first step with an empty completion, and the reason is logged.
"""

from __future__ import annotations

import logging
import time
import weakref

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality
from vllm.v1.sample.logits_processor import LogitsProcessor as _V1Processor

from regexlm.errors import RegexError
from regexlm.index.settler import worth_overlapping
from regexlm.vllm.arguments import parse_arguments, request_arguments
from regexlm.vllm.masker import BatchMasker
from regexlm.vllm.patterns import PatternCache
from regexlm.vllm.rows import ConstrainedRows, RowState

try:  # vLLM >= 0.32: the V2 model runner's interface
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor as _V2Processor
except ImportError:  # pragma: no cover - older vLLM has the V1 runner only

    class _V2Processor:  # type: ignore[no-redef]
        pass


logger = logging.getLogger("regexlm.vllm")

# The processor of each engine config. Installed regexlm registers the processor as an entry
# point, so an engine also given it by name (``--logits-processors``) builds it twice; the
# second instance stays inert instead of masking every row again.
_ENGINES: dict[int, weakref.ref] = {}


def _claim(vllm_config, processor) -> bool:
    """True if ``processor`` is the first live one built for ``vllm_config``."""
    for key in [k for k, ref in _ENGINES.items() if ref() is None]:
        del _ENGINES[key]
    ref = _ENGINES.get(id(vllm_config))
    other = ref() if ref is not None else None
    if other is not None and other.vllm_config is vllm_config:
        logger.info("regexlm's processor is loaded twice for one engine; one instance masks")
        return False
    _ENGINES[id(vllm_config)] = weakref.ref(processor)
    return True


def vocabulary_for(model_config):
    """The :class:`~regexlm.index.Vocabulary` of the model vLLM serves: its tokenizer as vLLM
    loads it, the logits width, and the generation config's end-of-sequence ids."""
    from vllm.tokenizers import cached_tokenizer_from_config

    from regexlm.index import Vocabulary

    tokenizer = cached_tokenizer_from_config(model_config)
    return Vocabulary.from_tokenizer(
        tokenizer,
        vocab_size=model_config.get_vocab_size(),
        generation_config=model_config.try_get_generation_config() or None,
    )


def _named(model_config) -> bool:
    """Whether the engine's arguments name regexlm's processor (a class, or its
    ``module:Class`` name), as opposed to its being loaded from the entry point alone."""
    for named in getattr(model_config, "logits_processors", None) or ():
        if isinstance(named, type) and issubclass(named, RegexLogitsProcessor):
            return True
        if isinstance(named, str):
            module, _, name = named.partition(":")
            if name == RegexLogitsProcessor.__name__ and module.split(".")[0] == "regexlm":
                return True
    return False


class RegexLogitsProcessor(_V1Processor, _V2Processor):
    """Constrain requests that carry ``extra_args={"regex": ...}`` (see the module docstring)."""

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        """Refuse a bad ``regex`` or a conflicting option (vLLM turns it into a 400)."""
        request_arguments(sampling_params)

    def __init__(self, vllm_config, *args) -> None:
        # V1: (vllm_config, device, is_pin_memory); V2: (vllm_config, req_states).
        if len(args) == 2:
            self.req_states = None
            self.device = torch.device(args[0])
        elif len(args) == 1:
            self.req_states = args[0]
            self.device = torch.device(args[0].device)
        else:
            raise TypeError(
                "RegexLogitsProcessor takes (vllm_config, device, is_pin_memory) or "
                "(vllm_config, req_states)"
            )
        self.vllm_config = vllm_config
        self.model_config = vllm_config.model_config
        self.max_model_len = getattr(self.model_config, "max_model_len", None)
        self.speculative = getattr(vllm_config, "speculative_config", None) is not None
        # The V1 runner with async scheduling hands processors the real output tokens only when
        # some processor was named in the engine's arguments (entry points do not count);
        # otherwise the newest token is a placeholder when apply() runs and the state would lag.
        scheduler = getattr(vllm_config, "scheduler_config", None)
        self.blind = (
            self.req_states is None
            and bool(getattr(scheduler, "async_scheduling", False))
            and not getattr(self.model_config, "logits_processors", None)
        )
        self.rows = ConstrainedRows()
        #: Steps this processor masked and the seconds it spent in them (for benchmarks).
        self.stats = {"steps": 0, "seconds": 0.0}
        self._patterns: PatternCache | None = None
        self._masker: BatchMasker | None = None
        self.active = _claim(vllm_config, self)
        if self.active and _named(self.model_config):
            self.prepare()

    # -- shared ------------------------------------------------------------------------------

    @property
    def patterns(self) -> PatternCache:
        """The compiled-pattern cache, made with the model's vocabulary on first use."""
        if self._patterns is None:
            vocabulary = self.load_vocabulary()
            self._patterns = PatternCache(vocabulary, explore_beside=worth_overlapping(self.device))
            self._masker = BatchMasker(vocabulary.eos_ids)
        return self._patterns

    def prepare(self) -> bool:
        """Make now the vocabulary and what every pattern over it shares
        (:func:`regexlm.index.compiler.prepare`), which the first constrained request would
        otherwise pay inside an engine step, holding up its whole batch: up to a second or two
        at a 262,144-token vocabulary. Done at construction when the processor was named in the
        engine's arguments (it is wanted there); an engine that only loaded it from the entry
        point pays nothing until a constrained request comes. A failure is logged and left to
        that first request, which reports it as before. Returns whether it was done."""
        from regexlm.index.compiler import prepare

        started = time.perf_counter()
        try:
            prepare(self.patterns.vocabulary)
        except Exception:  # the first constrained request meets it again, and says so
            logger.exception("regexlm could not prepare the model's vocabulary at start-up")
            return False
        logger.info("regexlm prepared the vocabulary in %.2f s", time.perf_counter() - started)
        return True

    def load_vocabulary(self):
        """The vocabulary patterns are compiled for (the served model's)."""
        return vocabulary_for(self.model_config)

    def is_argmax_invariant(self) -> bool:
        return False

    def _new_row(self, params, prompt_len: int | None, output) -> RowState | None:
        """The state of a request entering the batch; None if it is not constrained."""
        try:
            arguments = parse_arguments(getattr(params, "extra_args", None))
        except ValueError as exc:  # the frontend checks these; a request past it is a bug
            logger.error("a request's regex arguments are invalid (%s); ending it", exc)
            return RowState(None, True, None, output)
        if arguments is None:
            return None
        pattern = None
        if self.speculative:
            logger.error("regexlm does not support speculative decoding; ending the request")
        elif self.blind:
            logger.error(
                "this engine schedules asynchronously and regexlm's processor was loaded only "
                "from its entry point, so it cannot see each new token in time; name it "
                "(--logits-processors regexlm.vllm:RegexLogitsProcessor, or "
                "LLM(logits_processors=[RegexLogitsProcessor])) or turn async scheduling off. "
                "Ending the request."
            )
        else:
            try:
                pattern = self.patterns.get(arguments.patterns)
            except RegexError as exc:
                logger.error("pattern %r cannot be used (%s); ending the request", arguments, exc)
        row = RowState(pattern, arguments.stop_after_match, None, output)
        row.extra["max_tokens"] = getattr(params, "max_tokens", None)
        self._set_limit(row, prompt_len)
        return row

    def _set_limit(self, row: RowState, prompt_len: int | None) -> None:
        limit = row.extra.get("max_tokens")
        if prompt_len is not None and self.max_model_len:
            room = int(self.max_model_len) - int(prompt_len)
            limit = room if limit is None else min(int(limit), room)
            row.extra["limit_known"] = True
        row.limit = None if limit is None else int(limit)

    def _mask(self, logits: torch.Tensor, rows: list[tuple[int, RowState]]) -> torch.Tensor:
        if not rows:
            return logits
        _ = self.patterns  # makes the masker
        return self._masker.apply(logits, rows)

    # -- V1 model runner ---------------------------------------------------------------------

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if not batch_update or not self.active:
            return
        for slot in batch_update.removed:
            self.rows.remove(slot)
        for slot, params, prompt_ids, output_ids in batch_update.added:
            prompt_len = None if prompt_ids is None else len(prompt_ids)
            self.rows.set(slot, self._new_row(params, prompt_len, output_ids))
        for a, b, direction in batch_update.moved:
            if direction == MoveDirectionality.SWAP:
                self.rows.swap(a, b)
            else:
                self.rows.move(a, b)

    def apply(self, logits: torch.Tensor, ctx=None) -> torch.Tensor:
        if not self.rows:
            return logits
        started = time.perf_counter()
        try:
            return self._apply_v2(logits, ctx) if ctx is not None else self._apply_v1(logits)
        finally:
            self.stats["steps"] += 1
            self.stats["seconds"] += time.perf_counter() - started

    def _apply_v1(self, logits: torch.Tensor) -> torch.Tensor:
        batch = logits.shape[0]  # logits: [B, V]
        rows = []
        for slot, row in self.rows.rows.items():
            if slot < batch:
                self.rows.catch_up(row)
                rows.append((slot, row))
        return self._mask(logits, rows)

    # -- V2 model runner ---------------------------------------------------------------------

    def add_request(self, req_idx: int, sampling_params) -> bool:
        if not self.active:
            return False
        row = self._new_row(sampling_params, None, None)
        self.rows.set(req_idx, row)
        return row is not None

    def apply_staged_writes(self) -> None:
        pass

    def _apply_v2(self, logits: torch.Tensor, ctx) -> torch.Tensor:
        slots = ctx.idx_mapping_np  # [num_reqs] row -> slot
        if logits.shape[0] != len(slots):  # one row per draft token: speculative decoding
            logger.error("regexlm cannot mask speculative-decoding rows; skipping the step")
            return logits
        prompt_lens = self.req_states.prompt_len.np
        rows, wanted_slots, wanted_pos, owners = [], [], [], []
        for position, slot in enumerate(slots.tolist()):
            row = self.rows.get(slot)
            if row is None:
                continue
            prompt_len = int(prompt_lens[slot])
            if not row.extra.get("limit_known"):
                self._set_limit(row, prompt_len)
            generated = max(int(ctx.seq_lens_upper_bound_np[position]) - prompt_len, 0)
            for k in range(row.consumed, generated):
                wanted_slots.append(slot)
                wanted_pos.append(prompt_len + k)
                owners.append(row)
            rows.append((position, row))
        if owners:
            table = self.req_states.all_token_ids.gpu  # [max_num_reqs, max_model_len]
            index = torch.tensor([wanted_slots, wanted_pos], dtype=torch.long)
            tokens = table[index[0].to(table.device), index[1].to(table.device)].tolist()
            for row, token in zip(owners, tokens, strict=True):
                row.consume([token])
        return self._mask(logits, rows)
