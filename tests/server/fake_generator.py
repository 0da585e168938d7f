"""A test double of :class:`regexlm.generation.Generator` for the engine's mechanics.

``ScriptedGenerator`` honours the generator interface the server uses (``compile(pattern)`` and
``generate_batch(requests, on_token=, should_stop=, indexes=, return_exceptions=)``) without a
model: each row appends one
character per step, ``"x"`` by default, so the patterns these tests use (``x+``, ``x{3}``) match
after a known number of steps. It records every batch, can sleep per step or per compile, can hold
a batch at a gate until the test opens it, and can be told to fail: the whole batch
(``fail_with``) or one row (``fail_prompt``, returned in that row's place as the real generator
does). It never stands in for the real generator where behaviour matters: those tests use a
real ``Generator``.
"""

from __future__ import annotations

import re
import threading
import time

from regexlm.errors import UnsupportedRegexError
from regexlm.generation import Completion


class FakeIndex:
    """What ``compile`` returns: the patterns it was made for."""

    def __init__(self, pattern):
        self.pattern = pattern
        self.failure = None  # set by a test: the index stopped building rows


class ScriptedGenerator:
    def __init__(self, *, step_delay: float = 0.0, compile_delay: float = 0.0, char: str = "x"):
        self.step_delay = step_delay
        self.compile_delay = compile_delay
        self.char = char
        self.batches: list[list] = []  # the requests of each batch, in order
        self.batch_indexes: list[list] = []  # the indexes handed over with each batch
        self.compiled: list = []
        self.indexes: list[FakeIndex] = []  # every index made (the generator's cache)
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()  # set when a batch begins
        self.stopped_rows: list[tuple[int, int]] = []  # (batch number, row) dropped by should_stop
        self.fail_with: BaseException | None = None
        self.fail_prompt: str | None = None  # fail the row that holds this prompt
        self._lock = threading.Lock()

    def compile(self, pattern):
        with self._lock:
            self.compiled.append(pattern)
        if self.compile_delay:
            time.sleep(self.compile_delay)
        for p in [pattern] if isinstance(pattern, str) else pattern:
            if "(?=" in p or "(?!" in p:
                raise UnsupportedRegexError("lookahead", p.find("(?"), p)
        index = FakeIndex(pattern)
        with self._lock:
            self.indexes.append(index)
        return index

    def generate_batch(
        self, requests, *, on_token=None, should_stop=None, indexes=None, return_exceptions=False
    ):
        number = len(self.batches)
        self.batches.append(list(requests))
        self.batch_indexes.append(list(indexes) if indexes is not None else [None] * len(requests))
        self.started.set()
        self.gate.wait(30)
        if self.fail_with is not None:
            raise self.fail_with
        texts = ["" for _ in requests]
        done = [False for _ in requests]
        results: list = [None for _ in requests]
        for row, request in enumerate(requests):
            if request.prompt == self.fail_prompt:
                if not return_exceptions:
                    raise RuntimeError("scripted failure")
                results[row] = RuntimeError("scripted failure")
                done[row] = True
        patterns = [
            [r.pattern] if isinstance(r.pattern, str) else list(r.pattern) for r in requests
        ]

        def match(row):
            for i, p in enumerate(patterns[row]):
                if re.fullmatch(p, texts[row]):
                    return i
            return None

        step = 0
        while not all(done):
            for row, request in enumerate(requests):
                if done[row]:
                    continue
                if should_stop is not None and should_stop(row):
                    self.stopped_rows.append((number, row))
                    done[row] = True
                    results[row] = self._completion(texts[row], "token_limit", match(row))
                    continue
                if step >= request.max_new_tokens:
                    done[row] = True
                    results[row] = self._completion(texts[row], "token_limit", match(row))
                    continue
                texts[row] += self.char
                if on_token is not None:
                    on_token(row, 1000 + step, self.char)
                index = match(row)
                if index is not None and request.stop_after_match:
                    done[row] = True
                    results[row] = self._completion(texts[row], "pattern_match", index)
            step += 1
            if self.step_delay and not all(done):
                time.sleep(self.step_delay)
        return results

    @staticmethod
    def _completion(text, reason, index):
        return Completion(
            completion=text,
            tokens_generated=len(text),
            stop_reason=reason,
            matched=index is not None,
            pattern_index=index,
            token_ids=[1000 + i for i in range(len(text))],
            timings={"compile_s": 0.0, "prefill_s": 0.0, "decode_s": 0.0},
        )
