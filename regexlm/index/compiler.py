"""``compile``: pattern(s) + tokenizer -> :class:`TokenIndex`, through the caches.

The build, in order (shapes for a DFA of S states over K byte classes, V tokens):

1. walk the vocabulary trie through the DFA from every state at once, keeping only live
   (state, prefix) pairs (:mod:`~regexlm.index.build`) -> edges ``state -token group-> state``;
2. keep the states tokens can reach from the start and still complete, with the fewest tokens
   to a match (:mod:`~regexlm.index.min_tokens`);
3. merge token groups with equal columns into classes -> ``next_by_class [S', C]``,
   ``class_of [V]`` (:mod:`~regexlm.index.classes`); EOS is one more column that loops on
   matching states;
4. pack the allowed bitmask ``[S', ceil(V/32)]`` (:mod:`~regexlm.index.bitmask`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence

import numpy as np
import torch

from regexlm.errors import EmptyLanguageError, PatternTooComplexError
from regexlm.index import cache as index_cache
from regexlm.index.bitmask import pack_bitmask
from regexlm.index.build import _expand, _unique_inverse, walk
from regexlm.index.classes import group_classes
from regexlm.index.min_tokens import token_distances
from regexlm.index.token_index import TokenIndex
from regexlm.index.vocabulary import Vocabulary

_VOCABS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# The largest allowed-token bitmask an index may hold (states x ceil(V/32) x 4 bytes).
MAX_BITMASK_BYTES = 4 << 30


def vocabulary_of(tokenizer) -> Vocabulary:
    """The :class:`Vocabulary` of a tokenizer, made once per tokenizer object."""
    if isinstance(tokenizer, Vocabulary):
        return tokenizer
    try:
        found = _VOCABS.get(tokenizer)
    except TypeError:  # not weak-referenceable or unhashable
        return Vocabulary.from_tokenizer(tokenizer)
    if found is None:
        found = Vocabulary.from_tokenizer(tokenizer)
        _VOCABS[tokenizer] = found
    return found


def _normalize_patterns(pattern) -> tuple[str, ...]:
    if isinstance(pattern, str):
        return (pattern,)
    if isinstance(pattern, Sequence) and pattern and all(isinstance(p, str) for p in pattern):
        return tuple(pattern)
    raise TypeError("pattern must be a string or a non-empty list of strings")


def _device(device) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cpu")


def compile(pattern, tokenizer, device=None, cache: bool = True, **regex_options) -> TokenIndex:  # noqa: A001
    """The token index of ``pattern`` (a string or a list of strings) for ``tokenizer``.

    ``tokenizer`` is a Hugging Face tokenizer, a tiktoken-style encoding or a
    :class:`Vocabulary`. The index lives on ``device`` (default CPU). ``cache=False`` bypasses
    the in-memory and the on-disk cache (both read and write). ``regex_options`` (``timeout``,
    ``max_states``, ...) go to :func:`regexlm.automata.compile_regex`; they decide whether a
    pattern compiles, never what it compiles to, so they are not part of the cache key.
    """
    from regexlm.automata import compile_regex

    patterns = _normalize_patterns(pattern)
    vocab = vocabulary_of(tokenizer)
    device = _device(device)
    if cache:
        found = index_cache.lookup(patterns, vocab.fingerprint, device)
        if found is not None:
            return found
    started = time.perf_counter()
    dfa = compile_regex(list(patterns) if len(patterns) > 1 else patterns[0], **regex_options)
    regex_seconds = time.perf_counter() - started
    index = build_index(dfa, vocab, device, patterns=patterns)
    index.info["regex_seconds"] = regex_seconds
    if cache:
        index_cache.store(index, device)
    return index


def build_index(
    dfa, vocab: Vocabulary, device=None, *, patterns: tuple[str, ...] | None = None
) -> TokenIndex:
    """The token index of a DFA (any object with the automata layer's ``DFA`` attributes)."""
    started = time.perf_counter()
    device = _device(device)
    if patterns is None:
        patterns = tuple(getattr(dfa, "patterns", ()) or ())
    trie = vocab.tables(device)
    num_dfa = int(dfa.num_states)
    # table: [S_dfa, K] int64, byte_classes: [256] int64
    table = torch.as_tensor(np.asarray(dfa.table, dtype=np.int64), device=device)
    byte_classes = torch.as_tensor(np.asarray(dfa.byte_classes, dtype=np.int64), device=device)
    accept = np.asarray(dfa.accept, dtype=np.int64)
    start = int(dfa.start)
    if start == 0 or num_dfa <= 1:
        raise EmptyLanguageError(_empty_message(patterns))

    edges = walk(trie, table, byte_classes)

    # Token-level graph over DFA states, each distinct edge once.
    pair_keys, _ = _unique_inverse(edges.origin * num_dfa + edges.target, num_dfa * num_dfa)
    pair_keys = pair_keys.cpu().numpy()
    keep, dist = token_distances(
        pair_keys // num_dfa, pair_keys % num_dfa, accept >= 0, start, num_dfa
    )
    if not keep[start]:
        raise EmptyLanguageError(_empty_message(patterns))
    kept = np.nonzero(keep)[0]
    num_states = int(kept.size)
    new_id = np.full(num_dfa, -1, dtype=np.int64)
    new_id[kept] = np.arange(num_states)
    match_index = accept[kept]

    keep_t = torch.as_tensor(keep, device=device)
    new_id_t = torch.as_tensor(new_id, device=device)
    live = keep_t[edges.origin] & keep_t[edges.target]
    origin = new_id_t[edges.origin[live]]
    target = new_id_t[edges.target[live]]
    group = edges.group[live]
    # EOS: one more group, looping on every matching state.
    eos_group = edges.num_groups
    matching = torch.as_tensor(np.nonzero(match_index >= 0)[0], device=device)
    origin = torch.cat([origin, matching])
    target = torch.cat([target, matching])
    group = torch.cat([group, torch.full_like(matching, eos_group)])
    class_of_group, next_by_class = group_classes(origin, group, target, eos_group + 1, num_states)

    # class_of: [V], 0 for ids that are never allowed (or dead everywhere)
    string_class = class_of_group[edges.string_group]
    first = trie.token_of_string_start[edges.strings]
    count = trie.token_of_string_start[edges.strings + 1] - first
    total = int(count.sum())
    tokens = trie.token_ids[_expand(first, count, total)]
    class_of = torch.zeros(vocab.size, dtype=torch.int32, device=device)
    class_of[tokens] = torch.repeat_interleave(
        string_class.to(torch.int32), count, output_size=total
    )
    if vocab.eos_ids:
        eos = torch.as_tensor(vocab.eos_ids, device=device)
        class_of[eos] = class_of_group[eos_group].to(torch.int32)
        tokens = torch.cat([tokens, eos])

    bitmask_bytes = num_states * ((vocab.size + 31) // 32) * 4
    if bitmask_bytes > MAX_BITMASK_BYTES:
        raise PatternTooComplexError(
            f"the index would need a {bitmask_bytes / 2**30:.1f} GiB bitmask ({num_states} states x "
            f"{vocab.size} tokens), over the {MAX_BITMASK_BYTES / 2**30:.1f} GiB limit",
            limit="index_bytes",
        )
    bitmask = pack_bitmask(next_by_class >= 0, class_of, vocab.size, candidates=tokens)
    index = TokenIndex(
        next_by_class=next_by_class,
        class_of=class_of,
        bitmask=bitmask,
        min_tokens=torch.as_tensor(dist[kept].astype(np.int32), device=device),
        match_index=torch.as_tensor(match_index.astype(np.int32), device=device),
        dfa_state=torch.as_tensor(kept.astype(np.int32), device=device),
        start_state=int(new_id[start]),
        eos_ids=list(vocab.eos_ids),
        patterns=patterns,
        vocab_fingerprint=vocab.fingerprint,
    )
    index.info["build_seconds"] = time.perf_counter() - started
    index.info.update(edges.stats)
    return index


def _empty_message(patterns: tuple[str, ...]) -> str:
    shown = patterns[0] if len(patterns) == 1 else list(patterns)
    return f"no text made of the model's tokens matches {shown!r}"
