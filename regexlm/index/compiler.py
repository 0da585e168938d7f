"""``compile``: pattern(s) + tokenizer -> :class:`TokenIndex`, through the caches.

The pattern compiles to a lazy automaton (:func:`regexlm.automata.compile_lazy`: no DFA state is
built before a walk needs it), and the start state's row is built by a walk of the vocabulary
trie (:mod:`~regexlm.index.rows`). That is all compile does: the start state's mask is ready.

What comes next waits for the index's first use (:meth:`TokenIndex.settle`: the tables a decode
step reads, any other state): the states are explored breadth-first while they are few and cheap
(:data:`EXPLORE_STATES` rows, :data:`EXPLORE_WORK` live pairs). When that reaches them all, the
index is complete and exact; otherwise the remaining rows are built as decoding reaches them,
with a sound bound for ``min_tokens`` (see :mod:`~regexlm.index.token_index`), tightened along
real paths by a descent from the start. Where the model runs on an accelerator, ``generate``
runs this beside the prompt's forward pass (:mod:`~regexlm.index.settler`); the service runs it
in its compile pool, under the compile time limit. A pattern whose start no
single-byte path completes is explored at once, so an empty language is refused at compile.

``REGEXLM_INDEX=lazy`` in the environment skips the exploration, so every pattern takes the
on-demand path (the test suite runs that way too); ``REGEXLM_INDEX=auto`` (the default) is as
above.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Sequence

import torch

from regexlm.collector import collector_paused
from regexlm.index import cache as index_cache
from regexlm.index.rows import EagerAutomaton
from regexlm.index.token_index import UNREACHABLE, IndexRows, TokenIndex
from regexlm.index.vocabulary import Vocabulary

_VOCABS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# Build every row at compile time while the index has at most this many states.
EXPLORE_STATES = 48
# ... and while the walks have found at most this many live (state, token) pairs: rows that
# allow most of the vocabulary cost about a microsecond per 30 pairs to build.
EXPLORE_WORK = 1 << 17
MODE_VARIABLE = "REGEXLM_INDEX"
# What :func:`prepare` compiles to pay the process's first-use costs (see there): the common
# broad classes alone (their UTF-8 automata are shared by every pattern that reads one), and
# case folding.
WARM_UP_PATTERNS = [r'\w\d\s.[^"]', r"(?i)[\w\d\s]a(b|c)"]
# Byte budget of each pattern's lazy automaton cache: with the index's own tables it keeps a
# pattern near 4 bytes a token plus a megabyte.
AUTOMATON_CACHE_BYTES = 384 << 10


def index_mode() -> str:
    """``"auto"`` or ``"lazy"``, from :data:`MODE_VARIABLE`."""
    mode = os.environ.get(MODE_VARIABLE, "auto").strip().lower() or "auto"
    if mode not in ("auto", "lazy"):
        raise ValueError(f"{MODE_VARIABLE} must be 'auto' or 'lazy', got {mode!r}")
    return mode


def vocabulary_of(tokenizer) -> Vocabulary:
    """The :class:`Vocabulary` of a tokenizer, made once per tokenizer object."""
    if isinstance(tokenizer, Vocabulary):
        return tokenizer
    if tokenizer is None or isinstance(tokenizer, str | bytes | int | float):
        raise TypeError(
            f"the tokenizer must be a Hugging Face tokenizer or a regexlm Vocabulary, got "
            f"{type(tokenizer).__name__}; load one with regexlm.models.load_tokenizer(name)"
        )
    try:
        found = _VOCABS.get(tokenizer)
    except TypeError:  # not weak-referenceable or unhashable
        return Vocabulary.from_tokenizer(tokenizer)
    if found is None:
        found = Vocabulary.from_tokenizer(tokenizer)
        _VOCABS[tokenizer] = found
    return found


def prepare(tokenizer) -> Vocabulary:
    """Make now what every pattern over ``tokenizer`` shares, which the first patterns compiled
    would otherwise pay: the :class:`Vocabulary`, its byte trie and the summary of its subtrees
    for whole-subtree walks (:func:`regexlm.index.native_walk.trie_summary`, about 25 ms at
    262,144 tokens), its character trie (:mod:`regexlm.index.class_trie`, about 0.3 s) and the
    C helpers; and, once per process, what any first patterns pay (see below). ``regexlm
    serve`` calls it before serving and the benchmarks in their per-vocabulary set-up;
    otherwise each is made by the first pattern that needs it."""
    from regexlm import native
    from regexlm.index import class_trie, native_walk
    from regexlm.index.rows import flat_trie

    vocab = vocabulary_of(tokenizer)
    native.library()
    native_walk.trie_summary(flat_trie(vocab))
    class_trie.char_trie(vocab)
    # and what the process pays once, at its first patterns: the automata layer's modules, the
    # Unicode tables of \w \d \s and case folding (about 0.15 s in all), by a pattern that
    # reads them compiled end to end and kept nowhere
    compile(WARM_UP_PATTERNS, vocab, cache=False).settle()
    return vocab


def _normalize_patterns(pattern) -> tuple[str, ...]:
    if isinstance(pattern, str):
        return (pattern,)
    if isinstance(pattern, Sequence) and pattern and all(isinstance(p, str) for p in pattern):
        return tuple(pattern)
    raise TypeError("pattern must be a string or a non-empty list of strings")


_CPU = torch.device("cpu")


def _device(device) -> torch.device:
    return torch.device(device) if device is not None else _CPU


_REGEX_OPTIONS = ("timeout", "max_nfa_states", "cache_bytes")


def compile(  # noqa: A001
    pattern, tokenizer, device=None, cache: bool = True, mode: str | None = None, **regex_options
) -> TokenIndex:
    """The token index of ``pattern`` (a string or a list of strings) for ``tokenizer``.

    ``tokenizer`` is a Hugging Face tokenizer, a tiktoken-style encoding or a
    :class:`Vocabulary`. The index lives on ``device`` (default CPU). ``cache=False`` bypasses
    the in-memory and the on-disk cache (both read and write). ``regex_options`` (``timeout``,
    ``max_nfa_states``, ``cache_bytes``) go to :func:`regexlm.automata.compile_lazy`; they decide
    whether a pattern compiles, never what it compiles to, so they are not part of the cache
    key. ``max_states`` is accepted for compatibility and ignored: no DFA size is refused.
    ``mode`` is ``"auto"`` or ``"lazy"`` (see the module docstring); None reads
    ``REGEXLM_INDEX``.
    """
    from regexlm.automata import compile_lazy

    patterns = _normalize_patterns(pattern)
    vocab = vocabulary_of(tokenizer)
    device = _device(device)
    options = {k: v for k, v in regex_options.items() if k in _REGEX_OPTIONS}
    options.setdefault("cache_bytes", AUTOMATON_CACHE_BYTES)
    unknown = set(regex_options) - set(_REGEX_OPTIONS) - {"max_states"}
    if unknown:
        raise TypeError(f"unknown compile options: {', '.join(sorted(unknown))}")
    mode = index_mode() if mode is None else mode
    if mode not in ("auto", "lazy"):
        raise ValueError(f"mode must be 'auto' or 'lazy', got {mode!r}")
    if cache:
        found = index_cache.lookup(patterns, vocab.fingerprint, device, mode=mode)
        if found is not None:
            return found
    started = time.perf_counter()
    with collector_paused():
        automaton = compile_lazy(list(patterns) if len(patterns) > 1 else patterns[0], **options)
        regex_seconds = time.perf_counter() - started
        explore = None if mode == "lazy" else EXPLORE_STATES
        index = _index(automaton, vocab, device, patterns, explore=explore, full=False)
    index.info["regex_seconds"] = regex_seconds
    if cache:
        index_cache.store(index, device, mode)
    return index


def _index(automaton, vocab, device, patterns, *, explore, full: bool) -> TokenIndex:
    started = time.perf_counter()
    rows = IndexRows(
        automaton,
        vocab,
        patterns,
        strict=not full and explore is None,
        defer_distances=not full and explore is not None,
    )
    rows.ensure([rows.start])
    if full:
        rows.explore(None)
    else:
        rows.pending = (explore, EXPLORE_WORK, EXPLORE_WORK // 4)
    index = TokenIndex(rows, device)
    index.info["build_seconds"] = time.perf_counter() - started
    rows.when_settled(_settled_info(index))
    if not full and rows.min_tokens[rows.start] == UNREACHABLE:
        rows.settle()  # no single-byte path completes: only the exploration can tell
    return index


def _settled_info(index: TokenIndex):
    ref = weakref.ref(index)

    def record() -> None:
        found = ref()
        if found is not None:
            rows = found._rows
            found.info.update(
                exact=rows.exact, walked=rows.walked, settle_seconds=rows.settle_seconds
            )

    return record


def build_index(
    dfa, vocab: Vocabulary, device=None, *, patterns: tuple[str, ...] | None = None
) -> TokenIndex:
    """The complete, exact token index of an eager DFA (any object with the automata layer's
    ``DFA`` attributes): every reachable state's row is built."""
    device = _device(device)
    if patterns is None:
        patterns = tuple(getattr(dfa, "patterns", ()) or ())
    return _index(EagerAutomaton(dfa), vocab, device, patterns, explore=None, full=True)
