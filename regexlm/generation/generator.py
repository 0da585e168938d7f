"""`Generator`: a model, its tokenizer and the patterns compiled for them.

A Generator owns what is built once per model and reused across requests: the vocabulary (every
token id as its exact bytes), and the token indexes of the patterns seen so far (an LRU keyed by
the pattern list; the index layer keeps its own memory and disk cache beneath). Requests are
checked and compiled before the model runs, so a bad field or a bad pattern fails fast and costs
no model time; then :func:`regexlm.generation.decode_loop.run_batch` decodes the batch.

One thread drives a Generator's ``generate``/``generate_batch``. ``compile`` may also be called
from other threads (a server compiles patterns in a pool while a batch decodes): the pattern
cache is guarded by a lock, and compilations of different patterns run in parallel.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from regexlm.errors import PromptTooLongError
from regexlm.generation.completion import Completion
from regexlm.generation.constraint import Constraint
from regexlm.generation.request import GenerationRequest

OnToken = Callable[[int, int, str], None]
ShouldStop = Callable[[int], bool]


class Generator:
    """Constrained generation with one Hugging Face causal LM.

    ``device`` defaults to the model's device; ``backend`` picks the sampling kernels
    (``"auto"``, ``"torch"``, ``"triton"`` or ``"cuda"``, see :mod:`regexlm.ops`).
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        device=None,
        backend: str = "auto",
        max_cached_patterns: int = 256,
    ):
        import torch

        self.model = model
        self.tokenizer = tokenizer
        if device is None:
            device = next(model.parameters()).device
        self.device = torch.device(device)
        self.backend = backend
        self.max_cached_patterns = max_cached_patterns
        self._vocabulary = None
        self._constraints: OrderedDict[tuple[str, ...], Constraint] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls, name_or_path=None, *, device=None, backend: str = "auto", dtype=None
    ) -> Generator:
        """Load a model by name or local path (``None``: the embedded default) and wrap it."""
        from regexlm.models import load_model

        model, tokenizer = load_model(name_or_path, device=device, dtype=dtype)
        return cls(model, tokenizer, device=device, backend=backend)

    # --- patterns ------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Width of the model's logits (may exceed the tokenizer's size)."""
        head = (
            self.model.get_output_embeddings()
            if hasattr(self.model, "get_output_embeddings")
            else None
        )
        if head is not None and getattr(head, "weight", None) is not None:
            return int(head.weight.shape[0])
        return int(self.model.config.vocab_size)

    @property
    def vocabulary(self):
        """The tokenizer's tokens as exact bytes (:class:`regexlm.index.Vocabulary`), built once."""
        if self._vocabulary is None:
            from regexlm.index import Vocabulary

            with self._lock:
                if self._vocabulary is None:
                    self._vocabulary = Vocabulary.from_tokenizer(
                        self.tokenizer, vocab_size=self.vocab_size, generation_config=self.model
                    )
        return self._vocabulary

    def compile(self, pattern: str | Sequence[str]):
        """The token index of a pattern (or list of patterns) for this model; cached.

        Raises the :class:`~regexlm.errors.RegexError` family for patterns that cannot be used.
        """
        return self._constraint(pattern)[0].index

    def _constraint(self, pattern: str | Sequence[str]) -> tuple[Constraint, float]:
        """(constraint, seconds spent compiling it now: 0 when it was cached)."""
        key = (pattern,) if isinstance(pattern, str) else tuple(pattern)
        with self._lock:
            found = self._constraints.get(key)
            if found is not None:
                self._constraints.move_to_end(key)
                return found, 0.0
        from regexlm.index import compile as compile_index

        vocabulary = self.vocabulary
        started = time.perf_counter()
        source = key[0] if len(key) == 1 else list(key)
        index = compile_index(source, vocabulary, device=self.device)
        constraint = Constraint.from_index(index, key)
        seconds = time.perf_counter() - started
        with self._lock:
            self._constraints[key] = constraint
            self._constraints.move_to_end(key)
            while len(self._constraints) > self.max_cached_patterns:
                self._constraints.popitem(last=False)
        return constraint, seconds

    # --- prompts -------------------------------------------------------------------------------

    def encode_prompt(self, prompt: str) -> list[int]:
        """Prompt token ids as the model would see them; never empty (falls back to BOS/EOS)."""
        ids = list(self.tokenizer(prompt).input_ids)
        if not ids:
            start = self.tokenizer.bos_token_id
            if start is None:
                start = self.tokenizer.eos_token_id
            ids = [start if start is not None else 0]
        return ids

    @property
    def pad_id(self) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    @property
    def context_length(self) -> int | None:
        return getattr(self.model.config, "max_position_embeddings", None)

    # --- generation ----------------------------------------------------------------------------

    def generate(self, prompt: str, pattern: str | Sequence[str], **params) -> Completion:
        """Complete one prompt under ``pattern``; ``params`` are :class:`GenerationRequest` fields."""
        request = GenerationRequest(
            prompt, pattern if isinstance(pattern, str) else list(pattern), **params
        )
        return self.generate_batch([request])[0]

    def generate_batch(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_token: OnToken | None = None,
        should_stop: ShouldStop | None = None,
    ) -> list[Completion]:
        """Decode all requests together; one Completion per request, in order.

        Every request is validated and its pattern compiled before the model runs: a bad field
        raises ``ValueError`` naming it, a bad pattern the :class:`~regexlm.errors.RegexError`
        family, and nothing is generated for any row.

        ``on_token(row, token_id, text_delta)`` is called after each accepted token (``row`` is
        the request's position in ``requests``; end-of-sequence is never reported). A delta holds
        back an incomplete UTF-8 character until its last byte arrives, so the deltas of a row
        concatenate to its completion. ``should_stop(row)`` is polled before each step; a row for
        which it returns true ends at once with what it generated so far (``token_limit``); its
        deltas then lack a held-back partial character, which its completion shows as U+FFFD.
        """
        import torch

        from regexlm.generation.decode_loop import RowSpec, run_batch

        requests = [_as_request(r) for r in requests]
        if not requests:
            return []
        for request in requests:
            request.validate()
        specs = []
        for request in requests:
            constraint, compile_s = self._constraint(request.pattern)
            prompt_ids = self.encode_prompt(request.prompt)
            self._check_length(len(prompt_ids), request.max_new_tokens)
            specs.append(RowSpec(request, constraint, prompt_ids, compile_s))
        with torch.inference_mode():
            return run_batch(
                self.model,
                specs,
                token_bytes=self.vocabulary.token_bytes,
                pad_id=self.pad_id,
                device=self.device,
                backend=self.backend,
                on_token=on_token,
                should_stop=should_stop,
            )

    def _check_length(self, prompt_tokens: int, max_new_tokens: int) -> None:
        limit = self.context_length
        if limit is not None and prompt_tokens + max_new_tokens > limit:
            raise PromptTooLongError(
                f"prompt is too long: {prompt_tokens} tokens plus max_new_tokens={max_new_tokens} "
                f"exceed the model's context of {limit} tokens"
            )


def _as_request(request) -> GenerationRequest:
    if isinstance(request, GenerationRequest):
        return request
    if isinstance(request, dict):
        return GenerationRequest(**request)
    raise TypeError(f"expected a GenerationRequest, got {type(request).__name__}")
