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
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence

from regexlm.errors import PromptTooLongError
from regexlm.generation.completion import Completion
from regexlm.generation.constraint import Constraint
from regexlm.generation.request import GenerationRequest

# Characters of prompts whose token ids a Generator keeps (see Generator.encode_prompt)
PROMPT_MEMO_CHARS = 1 << 20

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
        cache_bytes: int | None = None,
        max_cached_patterns: int | None = None,
    ):
        import torch

        from regexlm.index import cache as index_cache

        if cache_bytes is not None:
            index_cache.configure(memory_bytes=cache_bytes)

        self.model = model
        self.tokenizer = tokenizer
        if device is None:
            device = next(model.parameters()).device
        self.device = torch.device(device)
        self.backend = backend
        # Compiled patterns live in the index layer's memory cache, bounded by bytes and shared
        # with every other user in the process (a server's compile pool included), so a pattern
        # is held and evicted once: ``cache_bytes`` sets that process-wide bound
        # (:func:`regexlm.index.cache.configure`). ``max_cached_patterns`` is accepted for
        # compatibility and has no effect (the bound is in bytes, not entries): say so.
        if max_cached_patterns is not None:
            warnings.warn(
                "Generator(max_cached_patterns=...) has no effect: compiled patterns are cached "
                "by bytes, process-wide; pass cache_bytes=... (or call "
                "regexlm.index.cache.configure) instead",
                DeprecationWarning,
                stacklevel=2,
            )
        self.max_cached_patterns = max_cached_patterns
        self._vocabulary = None
        self._lock = threading.Lock()
        self._prompt_ids: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._prompt_chars = 0
        self._prompt_lock = threading.Lock()

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

    def prepare(self) -> Generator:
        """Make now the vocabulary and what every pattern compiled for it shares (its tries,
        the C helpers, the Unicode tables: :func:`regexlm.index.compiler.prepare`), which the
        first request would otherwise pay in its compile time (a few tenths of a second at
        49,152 tokens, a second or two at 262,144). ``regexlm serve`` calls it before serving.
        Returns the Generator."""
        from regexlm.index.compiler import prepare

        prepare(self.vocabulary)
        return self

    def compile(self, pattern: str | Sequence[str]):
        """The token index of a pattern (or list of patterns) for this model; cached.

        Raises the :class:`~regexlm.errors.RegexError` family for patterns that cannot be used.
        """
        return self._constraint(pattern)[0].index

    def _constraint(self, pattern: str | Sequence[str]) -> tuple[Constraint, float]:
        """(constraint, seconds spent getting its index now: near 0 when it was cached)."""
        from regexlm.index import cache as index_cache
        from regexlm.index import compile as compile_index

        key = (pattern,) if isinstance(pattern, str) else tuple(pattern)
        vocabulary = self.vocabulary
        from regexlm.index.compiler import index_mode

        found = index_cache.lookup(
            key, vocabulary.fingerprint, self.device, disk=False, mode=index_mode()
        )
        if found is not None:
            return Constraint.from_index(found, key), 0.0
        started = time.perf_counter()
        source = key[0] if len(key) == 1 else list(key)
        index = compile_index(source, vocabulary, device=self.device)
        return Constraint.from_index(index, key), time.perf_counter() - started

    # --- prompts -------------------------------------------------------------------------------

    def encode_prompt(self, prompt: str) -> list[int]:
        """Prompt token ids as the model would see them (see :func:`encode_prompt`). The last
        prompts' ids are kept (up to :data:`PROMPT_MEMO_CHARS` characters of prompts): a server
        measures a prompt when it arrives, and the batch that decodes it does not encode it
        again."""
        with self._prompt_lock:
            found = self._prompt_ids.get(prompt)
            if found is not None:
                self._prompt_ids.move_to_end(prompt)
                return list(found)
        ids = encode_prompt(self.tokenizer, prompt)
        with self._prompt_lock:
            if prompt not in self._prompt_ids and len(prompt) <= PROMPT_MEMO_CHARS:
                self._prompt_ids[prompt] = tuple(ids)
                self._prompt_chars += len(prompt)
                while self._prompt_chars > PROMPT_MEMO_CHARS:
                    self._prompt_chars -= len(self._prompt_ids.popitem(last=False)[0])
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
            prompt, list(pattern) if isinstance(pattern, list | tuple) else pattern, **params
        )  # any other pattern (None, bytes, ...) is refused by name when it is checked
        return self.generate_batch([request])[0]

    def generate_batch(
        self,
        requests: Sequence[GenerationRequest],
        *,
        on_token: OnToken | None = None,
        should_stop: ShouldStop | None = None,
        indexes: Sequence[object | None] | None = None,
        return_exceptions: bool = False,
    ) -> list:
        """Decode all requests together; one Completion per request, in order.

        Every request is validated, its pattern compiled and its prompt encoded before the model
        runs: a bad field raises ``ValueError`` naming it, a bad pattern the
        :class:`~regexlm.errors.RegexError` family, a prompt that does not fit
        :class:`~regexlm.errors.PromptTooLongError`, and nothing is generated for any row.

        ``indexes`` gives, per request, a token index already made by :meth:`compile` for its
        pattern (or None): such a row is never compiled here, even when the pattern cache has
        dropped it meanwhile. A server compiles in its own threads, under its own time limit,
        and hands the indexes over, so the decoding thread never compiles.

        ``return_exceptions`` (as in :func:`asyncio.gather`): a failure confined to one row (a
        bad field or pattern, a prompt that does not fit, the tokenizer failing on it, an error
        while that row decodes) is returned in that row's place instead of raised, and the
        other rows are decoded together as usual. A failure of the batch as a whole (the
        model's forward pass) is raised either way.

        ``on_token(row, token_id, text_delta)`` is called after each accepted token (``row`` is
        the request's position in ``requests``; end-of-sequence is never reported). A delta holds
        back an incomplete UTF-8 character until its last byte arrives, so the deltas of a row
        concatenate to its completion. ``should_stop(row)`` is polled before each step; a row for
        which it returns true ends at once with what it generated so far (``token_limit``); its
        deltas then lack a held-back partial character, which its completion shows as U+FFFD.
        """
        import torch

        from regexlm.generation.decode_loop import run_batch

        requests = [_as_request(r) for r in requests]
        if indexes is not None and len(indexes) != len(requests):
            raise ValueError(f"got {len(indexes)} indexes for {len(requests)} requests")
        outcomes: list = [None] * len(requests)
        for i, request in enumerate(requests):  # every field first: the cheapest refusals
            checked = _attempt(return_exceptions, request.validate)
            if isinstance(checked, Exception):
                outcomes[i] = checked
        specs, rows = [], []  # rows[j]: the caller's position of specs[j]
        for i, request in enumerate(requests):
            if outcomes[i] is not None:
                continue
            index = None if indexes is None else indexes[i]
            spec = _attempt(return_exceptions, self._prepare, request, index)
            if isinstance(spec, Exception):
                outcomes[i] = spec
            else:
                specs.append(spec)
                rows.append(i)
        if specs:
            with torch.inference_mode():
                decoded = run_batch(
                    self.model,
                    specs,
                    token_bytes=self.vocabulary.token_bytes,
                    pad_id=self.pad_id,
                    device=self.device,
                    backend=self.backend,
                    on_token=None if on_token is None else _renumbered(on_token, rows),
                    should_stop=None if should_stop is None else _renumbered(should_stop, rows),
                )
            for i, outcome in zip(rows, decoded, strict=True):
                outcomes[i] = outcome
        if not return_exceptions:
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        return outcomes

    def _prepare(self, request: GenerationRequest, index=None):
        """A checked request's row: its constraint, prompt ids and compile time."""
        from regexlm.generation.decode_loop import RowSpec

        if index is None:
            constraint, compile_s = self._constraint(request.pattern)
        else:
            constraint, compile_s = self._constraint_of_index(request.patterns, index), 0.0
        prompt_ids = self.encode_prompt(request.prompt)
        self._check_length(len(prompt_ids), request.max_new_tokens)
        return RowSpec(request, constraint, prompt_ids, compile_s)

    def _constraint_of_index(self, key: tuple[str, ...], index) -> Constraint:
        """The constraint around an index :meth:`compile` made (no compiling)."""
        return Constraint.from_index(index, key)

    def _check_length(self, prompt_tokens: int, max_new_tokens: int) -> None:
        limit = self.context_length
        if limit is not None and prompt_tokens + max_new_tokens > limit:
            if max_new_tokens >= limit:  # no prompt would fit: the budget is the cause
                raise PromptTooLongError(
                    f"max_new_tokens={max_new_tokens} does not fit the model's context of "
                    f"{limit} tokens with any prompt (this one has {prompt_tokens}); ask for at "
                    f"most {limit - prompt_tokens} new tokens"
                )
            raise PromptTooLongError(
                f"prompt is too long: {prompt_tokens} tokens plus max_new_tokens={max_new_tokens} "
                f"exceed the model's context of {limit} tokens; shorten the prompt or ask for "
                "fewer tokens"
            )


def _attempt(return_exceptions: bool, step, *args):
    """``step(*args)``; with ``return_exceptions``, its exception is returned, not raised."""
    try:
        return step(*args)
    except Exception as exc:
        if not return_exceptions:
            raise
        return exc


def _renumbered(callback, rows: list[int]):
    """``callback(row, ...)`` called with the caller's row numbers instead of the batch's."""

    def call(row: int, *args):
        return callback(rows[row], *args)

    return call


def _as_request(request) -> GenerationRequest:
    if isinstance(request, GenerationRequest):
        return request
    if isinstance(request, dict):
        return GenerationRequest(**request)
    raise TypeError(f"expected a GenerationRequest, got {type(request).__name__}")


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """``prompt``'s token ids as ``tokenizer`` gives them to a model; never empty (falls back
    to BOS/EOS).

    The prompt is text, all of it: the text of a control token (``<|im_end|>``,
    ``<end_of_turn>``, ``<bos>``) inside it is encoded as the ordinary characters it is made
    of, never as the control token, so a user's text cannot end a turn or forge a chat
    marker (``split_special_tokens=True``, honoured by slow and fast tokenizers since
    transformers 4.42). The special tokens the tokenizer itself adds around a text are kept:
    a tokenizer that prepends BOS (Gemma, Llama) still does, as the model was trained to see.
    """
    try:
        ids = list(tokenizer(prompt, split_special_tokens=True).input_ids)
    except TypeError:  # a tokenizer-like object without the option: its plain encoding
        ids = list(tokenizer(prompt).input_ids)
    if not ids:
        start = tokenizer.bos_token_id
        if start is None:
            start = tokenizer.eos_token_id
        ids = [start if start is not None else 0]
    return ids
