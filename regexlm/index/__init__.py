"""The token index: (DFA, tokenizer) -> the tables one constrained decode step reads.

* :class:`Vocabulary` -- the exact bytes of every token id, EOS and special ids;
* :func:`compile` -- pattern(s) + tokenizer -> :class:`TokenIndex`, cached in memory and on disk;
* :class:`TokenIndex` -- next state per (state, token class), allowed bitmask, fewest tokens
  to a match, on the model's device.

Modules, in build order: ``bytes_families`` (token strings -> bytes), ``vocabulary``, ``trie``
(the vocabulary as a level-by-level trie), ``rows`` (a state's row: the trie walked through the
automaton; in C by ``native_walk`` and ``trie_walk.c``), ``class_trie`` (the trie with the
characters a pattern treats alike merged, which rows of broad patterns walk instead; made by
``class_trie.c``), ``token_classes`` (tokens no row tells
apart), ``min_tokens`` (token-level reachability), ``bitmask``, ``token_index``, ``compiler`` and
``cache``.
"""

from regexlm.index.compiler import build_index, compile
from regexlm.index.token_index import TokenIndex
from regexlm.index.vocabulary import Vocabulary

__all__ = ["TokenIndex", "Vocabulary", "build_index", "compile"]
