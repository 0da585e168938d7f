"""regexlm's requests on vLLM's async engine: :class:`VllmModel`.

``regexlm serve --engine vllm`` answers the same ``POST /v1/completion/regex`` as the
transformers engine, but decodes on vLLM's ``AsyncLLM``: continuous batching (a request joins
the running batch at the next step and leaves it when done), a paged KV cache, and tensor,
pipeline and data parallelism. This module is the model side of that; the service's engine
interface on top of it is :mod:`regexlm.server.vllm_engine`.

A :class:`~regexlm.generation.GenerationRequest` becomes one vLLM request: the prompt's token
ids (tokenized here, as the transformers engine does), ``SamplingParams`` with the same
sampling parameters and ``extra_args={"regex": ..., "stop_after_match": ...}``, which the
logits processor (:mod:`regexlm.vllm.processor`) in vLLM's worker constrains. The front keeps
its own copy of the pattern's token index (compiled on the CPU, cached like the generator's):
it validates patterns before anything reaches vLLM (the same 400s as the transformers engine)
and walks every generated token through the index to report what the transformers engine
reports: the text (from the tokens' exact bytes), ``matched``, ``pattern_index`` and the stop
reason. The stop rules are the decode loop's (:mod:`regexlm.generation.decode_loop`); when the
text matches with ``stop_after_match`` (or at a dead end) the answer is complete at once, and
the vLLM request, which the processor ends with end-of-sequence one step later, is aborted.

vLLM starts worker processes: a script that builds a :class:`VllmModel` needs an
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from regexlm.generation.completion import PATTERN_MATCH, TOKEN_LIMIT, Completion
from regexlm.generation.text import TextStream

logger = logging.getLogger("regexlm.vllm")


@dataclass
class EngineOptions:
    """What ``regexlm serve --engine vllm`` passes to vLLM (``AsyncEngineArgs`` fields)."""

    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    enforce_eager: bool = False
    max_num_seqs: int | None = None
    dtype: str = "auto"
    #: Any other ``AsyncEngineArgs`` field, as given with ``--vllm-arg NAME=VALUE``.
    extra: dict[str, Any] = field(default_factory=dict)

    def engine_args(self, model: str) -> dict[str, Any]:
        args: dict[str, Any] = dict(
            model=model,
            tensor_parallel_size=self.tensor_parallel_size,
            pipeline_parallel_size=self.pipeline_parallel_size,
            data_parallel_size=self.data_parallel_size,
            enforce_eager=self.enforce_eager,
            dtype=self.dtype,
            disable_log_stats=True,
        )
        if self.max_model_len is not None:
            args["max_model_len"] = self.max_model_len
        if self.gpu_memory_utilization is not None:
            args["gpu_memory_utilization"] = self.gpu_memory_utilization
        if self.max_num_seqs is not None:
            args["max_num_seqs"] = self.max_num_seqs
        args.update(self.extra)
        return args


def model_folder(name_or_path: str | None) -> str:
    """The local Hugging Face folder vLLM loads for a regexlm model name or path."""
    from regexlm.errors import ModelLoadError
    from regexlm.models.loading import resolve_model_source

    source = resolve_model_source(name_or_path)
    if source.gguf_file is not None:
        raise ModelLoadError(
            f"the vLLM engine loads Hugging Face model folders; {source.describe()} is a GGUF "
            "file. Pass the model's folder, an embedded model name, or use --engine hf."
        )
    return str(source.folder)


class VllmModel:
    """vLLM's ``AsyncLLM`` on a model, and the front-side pattern indexes (see the module
    docstring). :meth:`load` reads the model's configuration and tokenizer (seconds);
    :meth:`start` starts the engine (tens of seconds: worker processes, weights, KV cache)."""

    def __init__(self, engine_args, model_config, tokenizer, vocabulary, *, name: str):
        self.engine_args = engine_args
        self.model_config = model_config
        self.tokenizer = tokenizer
        self.vocabulary = vocabulary
        self.context_length = getattr(model_config, "max_model_len", None)
        self.name = name
        self.llm = None

    @classmethod
    def load(cls, name_or_path: str | None = None, options: EngineOptions | None = None):
        """A model by name or path (``None``: the embedded default), not started yet."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.tokenizers import cached_tokenizer_from_config

        from regexlm.vllm.processor import RegexLogitsProcessor, vocabulary_for

        options = options or EngineOptions()
        args = options.engine_args(model_folder(name_or_path))
        args.setdefault("logits_processors", [RegexLogitsProcessor])
        engine_args = AsyncEngineArgs(**args)
        model_config = engine_args.create_model_config()
        return cls(
            engine_args,
            model_config,
            cached_tokenizer_from_config(model_config),
            vocabulary_for(model_config),
            name=name_or_path or "smollm2",
        )

    def prepare(self) -> VllmModel:
        """Make now what every pattern the front compiles shares (see
        :meth:`regexlm.generation.Generator.prepare`); the engine's workers prepare their own
        copy when their processor is made. Returns the model."""
        from regexlm.index.compiler import prepare

        prepare(self.vocabulary)
        return self

    def start(self) -> None:
        """Start vLLM's engine; blocks until it is ready. Call it inside the event loop that
        will await :meth:`generate`."""
        if self.llm is None:
            from vllm.v1.engine.async_llm import AsyncLLM

            self.llm = AsyncLLM.from_engine_args(self.engine_args)

    def shutdown(self) -> None:
        if self.llm is not None:
            llm, self.llm = self.llm, None
            llm.shutdown()

    # -- what the service's front asks -------------------------------------------------------

    def compile(self, pattern: str | Sequence[str]):
        """The token index of a pattern (or list) for this model, on the CPU, through the
        index layer's byte-bounded memory cache. Raises the :class:`~regexlm.errors.RegexError`
        family."""
        from regexlm.index import compile as compile_index

        key = (pattern,) if isinstance(pattern, str) else tuple(pattern)
        return compile_index(key[0] if len(key) == 1 else list(key), self.vocabulary)

    def encode_prompt(self, prompt: str) -> list[int]:
        """Prompt token ids as the transformers engine makes them (control-token text stays
        text); never empty."""
        from regexlm.generation.generator import encode_prompt

        return encode_prompt(self.tokenizer, prompt)

    def check_length(self, prompt_ids: list[int], max_new_tokens: int) -> None:
        """Raise :class:`~regexlm.errors.PromptTooLongError` when the request does not fit."""
        from regexlm.errors import PromptTooLongError

        limit = self.context_length
        if limit and len(prompt_ids) + max_new_tokens > limit:
            raise PromptTooLongError(
                f"prompt is too long: {len(prompt_ids)} tokens plus max_new_tokens="
                f"{max_new_tokens} exceed the model's context of {limit} tokens; shorten the "
                "prompt or ask for fewer tokens"
            )

    # -- one request -------------------------------------------------------------------------

    def sampling_params(self, request):
        """vLLM's ``SamplingParams`` for a :class:`~regexlm.generation.GenerationRequest`."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        top_k, top_p = int(request.top_k), float(request.top_p)
        if top_p == 0.0:  # "only the most likely token(s)"; vLLM wants 0 < top_p <= 1
            top_k, top_p = 1, 1.0
        return SamplingParams(
            max_tokens=request.max_new_tokens,
            temperature=float(request.temperature),
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=float(request.repetition_penalty),
            seed=request.seed,
            detokenize=False,
            output_kind=RequestOutputKind.DELTA,
            extra_args={"regex": request.pattern, "stop_after_match": request.stop_after_match},
        )

    async def generate(
        self, request, on_token: Callable[[int, str], None] | None = None, index=None
    ):
        """Decode one request on vLLM; its :class:`~regexlm.generation.Completion`.

        ``on_token(token_id, text_delta)`` is called for each accepted token (end-of-sequence
        never), as the transformers engine does. ``index`` is the request's compiled pattern
        (None: compiled here, through the cache)."""
        started = time.perf_counter()
        if index is None:
            index = self.compile(request.pattern)
        compile_s = time.perf_counter() - started
        prompt_ids = self.encode_prompt(request.prompt)
        self.check_length(prompt_ids, request.max_new_tokens)
        if self.llm is None:
            raise RuntimeError("the vLLM engine is not started")
        walk = _Walk(index, request, self.vocabulary.token_bytes)
        request_id = f"regexlm-{uuid.uuid4().hex}"
        first_token_at = None
        try:
            params = self.sampling_params(request)
        except Exception as exc:  # vLLM's own validation of the parameters: the request's fault
            raise ValueError(str(exc)) from exc
        stream = self.llm.generate({"prompt_token_ids": prompt_ids}, params, request_id)
        try:
            async for output in stream:
                for token in output.outputs[0].token_ids:
                    if first_token_at is None:
                        first_token_at = time.perf_counter()
                    delta = walk.push(int(token))
                    if delta is not None and on_token is not None:
                        on_token(int(token), delta)
                    if walk.stop_reason is not None:
                        break
                if walk.stop_reason is not None:
                    break
        except Exception as exc:
            if _is_client_error(exc):  # vLLM refused the request itself: a 400, not a 500
                raise ValueError(str(exc)) from exc
            raise
        finally:
            if walk.stop_reason is not None:
                await stream.aclose()  # aborts the request in vLLM if it is still running
        ended = time.perf_counter()
        first_token_at = first_token_at or ended
        return Completion(
            completion=walk.text.text,
            tokens_generated=len(walk.tokens),
            stop_reason=walk.stop_reason or TOKEN_LIMIT,
            matched=walk.match >= 0,
            pattern_index=walk.match if walk.match >= 0 else None,
            token_ids=list(walk.tokens),
            timings={
                "compile_s": compile_s,
                "prefill_s": first_token_at - started - compile_s,
                "decode_s": ended - first_token_at,
            },
        )


def _is_client_error(exc: BaseException) -> bool:
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:  # pragma: no cover - older vLLM
        return False
    return isinstance(exc, VLLMClientError)


class _Walk:
    """A request's tokens through its pattern's index, with the decode loop's stop rules."""

    def __init__(self, index, request, token_bytes):
        self.index = index
        self.request = request
        self.token_bytes = token_bytes
        self.eos = frozenset(int(e) for e in index.eos_ids)
        self.state = int(index.start_state)
        self.match = self._match_of(self.state)
        self.tokens: list[int] = []
        self.text = TextStream()
        self.stop_reason: str | None = None

    def _match_of(self, state: int) -> int:
        """Lowest pattern index matching at ``state``, -1 if none."""
        return int(self.index.match_index[state])

    def push(self, token: int) -> str | None:
        """Apply one generated token; the text delta, or None for end-of-sequence."""
        if self.stop_reason is not None:
            return None
        if token in self.eos:
            if self.match < 0:
                raise RuntimeError(
                    f"vLLM ended a request at a non-matching state of {self.index.patterns!r}"
                )
            self.stop_reason = PATTERN_MATCH
            return None
        nxt = self.index.next_state(self.state, token)
        if nxt < 0:
            raise RuntimeError(
                f"vLLM produced token {token}, which {self.index.patterns!r} does not allow "
                "there: is regexlm's logits processor loaded in the engine?"
            )
        self.state = nxt
        self.tokens.append(token)
        self.match = self._match_of(nxt)
        if self.match >= 0 and (self.request.stop_after_match or not self._can_extend()):
            self.stop_reason = PATTERN_MATCH
        elif len(self.tokens) >= self.request.max_new_tokens:
            self.stop_reason = TOKEN_LIMIT
        return self.text.push(self.token_bytes[token], final=self.stop_reason is not None)

    def _can_extend(self) -> bool:
        """Whether a token other than end-of-sequence is allowed at the current state."""
        index = self.index
        index.ensure_rows([self.state])
        allowed = index.rows_of([self.state])[0, index.class_of.long()] >= 0  # [V]
        if self.eos:
            allowed[list(self.eos)] = False
        return bool(allowed.any())
