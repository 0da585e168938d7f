"""The level-by-level vocabulary trie holds exactly the prefixes of the token strings."""

from __future__ import annotations

from regexlm.index import Vocabulary
from regexlm.index.trie import VocabTrie


def _decode(trie: VocabTrie):
    """Every node's prefix, per depth, rebuilt from parents implied by the child ranges."""
    levels = [[bytes([b]) for b in trie.byte[0].tolist()]]
    for d in range(1, trie.max_len):
        prefixes = [b""] * trie.byte[d].numel()
        for parent, (start, count) in enumerate(
            zip(trie.child_start[d - 1].tolist(), trie.child_count[d - 1].tolist(), strict=True)
        ):
            for c in range(start, start + count):
                prefixes[c] = levels[d - 1][parent] + bytes([trie.byte[d][c].item()])
        levels.append(prefixes)
    return levels


def _check(vocab: Vocabulary) -> None:
    trie = vocab.tables()
    never = vocab.never_allowed()
    strings = sorted({b for b, n in zip(vocab.token_bytes, never, strict=True) if not n})
    levels = _decode(trie)
    for d, prefixes in enumerate(levels, start=1):
        want = sorted({s[:d] for s in strings if len(s) >= d})
        assert prefixes == want, f"depth {d}"
        terms = trie.term[d - 1].tolist()
        for node, prefix in enumerate(prefixes):
            assert (terms[node] >= 0) == (prefix in strings)
            if terms[node] >= 0:
                assert strings[terms[node]] == prefix
            below = [i for i, s in enumerate(strings) if s.startswith(prefix) and len(s) > d]
            first, count = trie.tail_first[d - 1][node].item(), trie.tail_count[d - 1][node].item()
            assert below == list(range(first, first + count))
    # every allowed token id maps to its string; others to -1
    for i, (b, n) in enumerate(zip(vocab.token_bytes, never, strict=True)):
        s = trie.string_of[i].item()
        assert (s == -1) if n else strings[s] == b
    width = trie.width
    for i, s in enumerate(strings):
        assert bytes(trie.string_bytes[i * width : i * width + len(s)].tolist()) == s
        assert trie.string_len[i].item() == len(s)
    # tokens of each string, through the CSR lists
    starts, ids = trie.token_of_string_start.tolist(), trie.token_ids.tolist()
    for i, s in enumerate(strings):
        assert sorted(ids[starts[i] : starts[i + 1]]) == [
            t for t, b in enumerate(vocab.token_bytes) if b == s and not never[t]
        ]


def test_small_vocabulary_with_duplicates_and_specials():
    pieces = [b"<s>", b"a", b"ab", b"abc", b"b", b"ab", b"", b"\xff\x00", b"\xff", b"ba", b"abd"]
    _check(Vocabulary(pieces, eos_ids=[0], special_ids=[0], size=14))


def test_smollm2_trie_sample(smollm2_vocab):
    # the full structure on a slice of the real vocabulary (all of it is exercised elsewhere)
    sample = Vocabulary(smollm2_vocab.token_bytes[:700], eos_ids=[2], special_ids=range(17))
    _check(sample)
