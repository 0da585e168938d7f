"""Thompson NFA over characters, and the removal of look-around assertions.

**Construction.** The syntax tree becomes a Thompson NFA whose transitions read one *character*
from a code-point set (a :data:`~regexlm.automata.charset.CharSet`); it has epsilon transitions,
assertion transitions and match states (one per pattern, carrying the pattern index). Bounded
repeats ``x{m,n}`` are laid out as ``m`` copies followed by ``n-m`` optional copies, each of which
may jump straight to the end: the epsilon closure of any state then stays small, where the naive
``x?x?x?...`` layout would put all ``n`` copies in one closure.

The NFA is over characters, not bytes: the byte level is produced lazily by the subset
construction (see ``dfa.py``), which reads each character transition through the UTF-8 automaton
of its set. Many transitions share one set (``.``, ``\\w``), so they share one UTF-8 automaton.

**Assertions.** ``^ $ \\A \\Z \\b \\B`` look at the character before and after the current
position. As regex-automata does, they are removed by remembering context in the states:

* *look-behind context*: the kind of the previous character (start of text, newline, word, other).
  Only the distinctions some assertion needs are kept, so a pattern with only ``\\b`` tracks
  "word / not word" and nothing else.
* *look-ahead requirement*: a set of allowed kinds for the *next* character, plus "end of text".
  Passing an assertion intersects the requirement; reading a character keeps only the part of the
  transition set the requirement allows; a match state accepts only if "end of text" is allowed.
  Non-multiline ``$`` may sit before a final newline, so one more requirement, "a newline that is
  the last character", makes the newline transition lead to a state that must then end.

The product of NFA state, context and requirement is explored from the start only as far as it is
reachable, and yields an ordinary NFA with no assertions left.
"""

from __future__ import annotations

import re

from regexlm.automata import charset as cs
from regexlm.automata import unicode as uni
from regexlm.automata.charset import CharSet
from regexlm.automata.limits import Deadline, Limits, too_many_nfa_states
from regexlm.automata.parse import Alt, Chars, Concat, Look, Repeat


class CharNFA:
    """A Thompson NFA over characters.

    For each state ``q``: ``eps[q]`` epsilon targets; ``edges[q]`` ``(CharSet, target)`` pairs;
    ``looks[q]`` ``(look kind, target)`` pairs; ``match[q]`` the pattern index matched when the
    input ends in ``q`` (-1 if none).

    Each state's transitions are a tuple, made by :meth:`link`, :meth:`edge` and :meth:`look`
    (each adds to one state's tuple; a state has few: the builders add a state's many at once):
    a state with none holds the shared empty tuple, so a new state costs no list of its own and
    a finished NFA, which an automaton keeps, needs no pass to make them compact (a third of
    the memory of lists).
    """

    __slots__ = ("eps", "edges", "looks", "match", "start", "all_live")

    def __init__(self) -> None:
        self.eps: list[tuple[int, ...]] = []
        self.edges: list[tuple[tuple[CharSet, int], ...]] = []
        self.looks: list[tuple[tuple[str, int], ...]] = []
        self.match: list[int] = []
        self.start = 0
        # Known to reach a match from every state (so trimming has nothing to drop)
        self.all_live = False

    def add(self) -> int:
        self.eps.append(())
        self.edges.append(())
        self.looks.append(())
        self.match.append(-1)
        return len(self.match) - 1

    def link(self, q: int, *targets: int) -> None:
        """Epsilon transitions from ``q`` to ``targets``."""
        self.eps[q] += targets

    def edge(self, q: int, chars: CharSet, target: int) -> None:
        self.edges[q] += ((chars, target),)

    def look(self, q: int, kind: str, target: int) -> None:
        self.looks[q] += ((kind, target),)

    @property
    def num_states(self) -> int:
        return len(self.match)

    def has_looks(self) -> bool:
        return any(self.looks)


# ---------------------------------------------------------------------------------------------
# Size estimate (before building anything)


def estimate_size(node, cap: int) -> int:
    """States the NFA for ``node`` will have; stops counting early once past ``cap``."""
    if isinstance(node, (Chars, Look)):
        return 2
    if isinstance(node, Concat):
        total = 1
        for item in node.items:
            total += estimate_size(item, cap)
            if total > cap:
                return total
        return total
    if isinstance(node, Alt):
        total = 2
        for item in node.items:
            total += estimate_size(item, cap)
            if total > cap:
                return total
        return total
    if isinstance(node, Repeat):
        copies = node.max if node.max is not None else node.min + 1
        if copies == 0:
            return 2
        return 3 + copies * (estimate_size(node.item, cap) + 2)
    raise TypeError(f"unknown node {node!r}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# Thompson construction


def _fragment(nfa: CharNFA, node, entry: int) -> int:
    """Add the states of ``node``, starting from the existing state ``entry``; return its exit.

    Starting a fragment at the state before it, rather than at a new state joined by an
    epsilon, halves the states of literal text. It is exact because no fragment adds a
    transition *into* its entry: the entry is reached only from before, as the epsilon's
    target would be. An exit has no character transition when it is returned, so the next
    fragment adds at most one; a state keeps at most one (the subset construction reads a
    state's sets as disjoint), which is why branches and loop bodies start at states of their
    own: a branch's first characters may overlap its sibling's, a body's what follows the loop.
    """
    if isinstance(node, Chars):
        e = nfa.add()
        if node.chars:
            nfa.edge(entry, node.chars, e)
        return e
    if isinstance(node, Concat):
        cur = entry
        for item in node.items:
            cur = _fragment(nfa, item, cur)
        return cur
    if isinstance(node, Alt):
        e = nfa.add()
        starts = []
        for item in node.items:
            a = nfa.add()
            starts.append(a)
            nfa.link(_fragment(nfa, item, a), e)
        nfa.link(entry, *starts)  # (at once: one tuple, however many branches)
        return e
    if isinstance(node, Repeat):
        cur = entry
        for _ in range(node.min):
            cur = _fragment(nfa, node.item, cur)
        if node.max is None:
            loop, a = nfa.add(), nfa.add()
            nfa.link(cur, loop)
            nfa.link(loop, a)
            nfa.link(_fragment(nfa, node.item, a), loop)
            return loop
        if node.max > node.min:
            end = nfa.add()
            for _ in range(node.max - node.min):
                nfa.link(cur, end)
                after = _fragment(nfa, node.item, cur)
                if after == cur:  # an item that adds nothing: the other copies would not either
                    break
                cur = after
            nfa.link(cur, end)
            cur = end
        return cur
    if isinstance(node, Look):
        e = nfa.add()
        nfa.look(entry, node.kind, e)
        return e
    raise TypeError(f"unknown node {node!r}")  # pragma: no cover


def _fragments_all_live(node) -> bool:
    """Whether every state of ``node``'s fragment surely reaches the fragment's exit: each
    character set has an encodable member and there is no assertion (which may never hold
    where it stands). Read on the tree, once per node, not on its copies in the NFA."""
    if isinstance(node, Chars):
        return _encodable(node.chars)
    if isinstance(node, Look):
        return False
    if isinstance(node, Repeat):
        return _fragments_all_live(node.item)
    return all(_fragments_all_live(item) for item in node.items)


def build_nfa(trees: list, limits: Limits) -> CharNFA:
    """One NFA for all patterns; the match state of pattern ``i`` carries ``i``."""
    cap = limits.max_nfa_states
    total = 1
    for counted, tree in enumerate(trees, 1):
        total += estimate_size(tree, cap) + 1
        if total > cap:
            raise too_many_nfa_states(total, cap, counted)
    nfa = CharNFA()
    nfa.all_live = all(_fragments_all_live(tree) for tree in trees)
    nfa.start = nfa.add()
    starts = []
    for i, tree in enumerate(trees):
        a = nfa.add()
        starts.append(a)
        m = nfa.add()
        nfa.match[m] = i
        nfa.link(_fragment(nfa, tree, a), m)
    nfa.link(nfa.start, *starts)
    return nfa


# ---------------------------------------------------------------------------------------------
# Removing assertions

START = -1  # look-behind context at the start of the text
END = 1  # requirement bit: the text may end here
NL_FINAL = 2  # requirement bit: the next character may be a '\n' that ends the text

# Before Python 3.14, ``\B`` never matches when the whole input is empty; ask ``re``.
_NOT_WORD_MATCHES_EMPTY = re.fullmatch(r"\B", "") is not None

_WORD_UNI = ("word_unicode", "not_word_unicode")
_WORD_ASCII = ("word_ascii", "not_word_ascii")
_NL_KINDS = ("start_line", "end_line", "end_text_nl")


class _Atoms:
    """The partition of characters that the assertions in use can tell apart."""

    def __init__(self, kinds: set):
        need_nl = any(k in kinds for k in _NL_KINDS)
        need_uni = any(k in kinds for k in _WORD_UNI)
        need_ascii = any(k in kinds for k in _WORD_ASCII)
        nl = uni.NEWLINE
        aword = uni.ASCII_WORD
        uword = cs.subtract(uni.unicode_word(), aword) if need_uni else ()
        other = cs.complement(cs.union(cs.union(nl, aword), uword))
        base = [  # (chars, is newline, is ascii word, is unicode word)
            (nl, True, False, False),
            (aword, False, True, True),
            (uword, False, False, True),
            (other, False, False, False),
        ]
        groups: dict[tuple, CharSet] = {}
        for chars, is_nl, is_a, is_u in base:
            sig = (need_nl and is_nl, need_ascii and is_a, need_uni and is_u)
            groups[sig] = cs.union(groups.get(sig, ()), chars)
        self.sigs = list(groups)
        self.chars = [groups[s] for s in self.sigs]
        self.n = len(self.sigs)
        self.full = (1 << (self.n + 2)) - 1
        self.nl_atom = next(i for i, c in enumerate(self.chars) if cs.contains(c, 0x0A))

        def bits(pred) -> int:
            return sum(1 << (2 + i) for i, s in enumerate(self.sigs) if pred(s))

        self.nl_bits = bits(lambda s: s[0])
        self.aword_bits = bits(lambda s: s[1])
        self.uword_bits = bits(lambda s: s[2])

    def allowed(self, kind: str, prev: int) -> int:
        """Requirement mask on what follows, for assertion ``kind`` after context ``prev``."""
        full = self.full
        if kind == "start_text":
            return full if prev == START else 0
        if kind == "start_line":
            return full if prev == START or self.sigs[prev][0] else 0
        if kind == "end_text":
            return END
        if kind == "end_line":
            return END | NL_FINAL | self.nl_bits
        if kind == "end_text_nl":
            return END | NL_FINAL
        if kind in _WORD_UNI:
            word, prev_word = self.uword_bits, prev != START and self.sigs[prev][2]
        else:
            word, prev_word = self.aword_bits, prev != START and self.sigs[prev][1]
        boundary = full & ~word if prev_word else word
        not_boundary = word if prev_word else full & ~word
        if prev == START and not _NOT_WORD_MATCHES_EMPTY:
            not_boundary &= ~END  # at the start, END means the input is empty
        return boundary if kind.startswith("word") else not_boundary


def remove_looks(nfa: CharNFA, limits: Limits, deadline: Deadline) -> CharNFA:
    """An equivalent NFA without assertions (``nfa`` itself if it has none)."""
    if not nfa.has_looks():
        return nfa
    kinds = {k for row in nfa.looks for k, _ in row}
    atoms = _Atoms(kinds)
    out = CharNFA()
    ids: dict[tuple[int, int, int], int] = {}
    todo: list[tuple[int, int, int]] = []
    split_cache: dict[tuple[CharSet, int], CharSet] = {}
    cap = limits.max_nfa_states

    def state(key: tuple[int, int, int]) -> int:
        sid = ids.get(key)
        if sid is None:
            sid = ids[key] = out.add()
            todo.append(key)
            if sid > cap:
                raise too_many_nfa_states(sid, cap)
        return sid

    out.start = state((nfa.start, START, atoms.full))
    newline = uni.NEWLINE
    while todo:
        key = todo.pop()
        q, prev, req = key
        sid = ids[key]
        if sid & 1023 == 0:
            deadline.check("assertion removal")
        eps = [state((t, prev, req)) for t in nfa.eps[q]]
        for kind, t in nfa.looks[q]:
            m = req & atoms.allowed(kind, prev)
            if m:
                eps.append(state((t, prev, m)))
        out.eps[sid] = tuple(eps)  # (each state of out is made once: its rows at once)
        if nfa.match[q] >= 0 and req & END:
            out.match[sid] = nfa.match[q]
        edges = []
        for chars, t in nfa.edges[q]:
            for i in range(atoms.n):
                if req & (1 << (2 + i)):
                    part = split_cache.get((chars, i))
                    if part is None:
                        part = split_cache[(chars, i)] = cs.intersect(chars, atoms.chars[i])
                    if part:
                        edges.append((part, state((t, i, atoms.full))))
                elif req & NL_FINAL and i == atoms.nl_atom and cs.contains(chars, 0x0A):
                    edges.append((newline, state((t, i, END))))
        out.edges[sid] = tuple(edges)
    return out


# ---------------------------------------------------------------------------------------------
# Trimming


def _encodable(chars: CharSet) -> bool:
    """Whether some member is not a surrogate (so has a UTF-8 encoding)."""
    return any(lo < 0xD800 or hi > 0xDFFF for lo, hi in chars)


def trim(nfa: CharNFA) -> CharNFA:
    """Drop every transition into a state from which no match can be reached (in place).

    A character transition counts only if some character of its set has a UTF-8 encoding (a set
    of lone surrogates has none). After trimming, every non-empty set of NFA positions can still
    reach a match, so the subset construction never creates a state that cannot match: the dead
    state is the only one, and no pruning pass over the DFA is needed.

    A Thompson NFA straight from :func:`build_nfa` whose character sets all have an encodable
    member (``all_live``) is returned as it is: every state of a fragment reaches the fragment's
    exit, and every exit reaches a match.
    """
    assert not nfa.has_looks(), "assertions must be removed first"
    if nfa.all_live:
        return nfa
    n = nfa.num_states
    preds: list[list[int]] = [[] for _ in range(n)]
    for q in range(n):
        for t in nfa.eps[q]:
            preds[t].append(q)
        for chars, t in nfa.edges[q]:
            if _encodable(chars):
                preds[t].append(q)
    live = [m >= 0 for m in nfa.match]
    stack = [q for q in range(n) if live[q]]
    while stack:
        t = stack.pop()
        for q in preds[t]:
            if not live[q]:
                live[q] = True
                stack.append(q)
    for q in range(n):
        nfa.eps[q] = tuple([t for t in nfa.eps[q] if live[t]])
        nfa.edges[q] = tuple(
            [(chars, t) for chars, t in nfa.edges[q] if live[t] and _encodable(chars)]
        )
    if not live[nfa.start]:
        nfa.eps[nfa.start] = ()
    return nfa
