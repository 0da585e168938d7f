"""The token index: the tables one decode step reads, with rows built on demand.

For index states ``0 .. S-1`` (automaton states a token boundary reaches), R rows, V tokens, C
token classes:

* ``next_by_class int32[R, C]``: a built row per state that has one: the state after a token of
  the class, -1 = not allowed; row 0 allows nothing;
* ``row_of int32[S]``: each state's row (0, the row that allows nothing, until it is built);
* ``class_of int32[V]``: the class of every token id (class 0 is never allowed; kept on the
  host as ``uint16`` while there are at most 65,536 classes);
* ``min_tokens int32[S]``: fewest tokens (EOS excluded) that complete a match, 0 at matches,
  or a sound upper bound (see below); ``UNREACHABLE`` (int32 max) when none is known;
* ``match_index int32[S]``: lowest matching pattern index, -1 where the text does not match;
* ``start_state``; ``eos_ids``: allowed exactly at matching states, where they keep the state.

**Rows on demand.** An index state's row is built the first time it is asked for
(:meth:`TokenIndex.ensure_rows`): the vocabulary trie is walked from the states' automaton
states (:mod:`regexlm.index.rows`, in C where it can be built), every target becomes an index
state (with no row yet), and the row is appended. Until then a state reads row 0, which allows
nothing: a state a walk reached but decoding never visited costs its bounds and its key, not a
row (most targets of a row are never drawn). A decoder calls ``ensure_rows`` with the states its
rows are in before each step and then reads the current tables, which may have been reallocated
(:attr:`TokenIndex.version` changes whenever they are).

**Classes.** The step reads classes of tokens that no row built so far tells apart
(:mod:`regexlm.index.token_classes`). When a new row separates tokens of one class, the class
is split: its column is copied for the existing rows and ``class_of`` is rewritten. The C walk
through the C lazy DFA checks the classes as it goes; a row that splits none (most rows, once
the first few have refined the classes) is written from its row over classes, with no pass over
its tokens in Python.

**Exact or bounded.** At the index's first use beyond the start state's mask
(:meth:`IndexRows.settle`; compile builds only the start row) the states are explored
breadth-first for a few dozen states. If that reaches every state, the token graph is known and
``min_tokens`` is exact (a backward search over it), and states from which no token path
completes a match are dropped. Otherwise ``min_tokens`` is the *byte distance* to a match using
single-byte tokens (:meth:`regexlm.automata.LazyDFA.byte_distance`): the fewest tokens when
every token is one byte, so it is never below the exact value, and from any state with a finite
value some allowed single-byte token leads to a state whose value is one less. That is what the
budget rule needs to stay sound: a row that is promised a match within its budget always has a
token that keeps the promise. It is stricter than exact where multi-byte tokens would finish
sooner.

**The first mask.** Before the exploration, the start row leaves out every target no single-byte
path completes, as rows built on demand do; after it, the row is exact. The two agree wherever
the vocabulary spells each byte the pattern needs as a token of its own, and the first never
allows a token the second does not. Where the vocabulary's single bytes spell some character
of every character transition of the automaton and every continuation byte
(:meth:`~regexlm.automata.native_lazy.NativeLazyDFA.spells_every_label`), no state's byte
distance is infinite, so the start row leaves nothing out and the distances, a search over the
whole NFA, wait for the exploration too (``distances_later``): until then the bounds read 0, and
nothing reads them but the tests for "no completion". The exploration may renumber states,
except the start, which is always 0: no other id exists for a caller before it.

**Memory.** The index holds ``class_of`` (2 bytes a token on the host, see
:mod:`~regexlm.index.token_classes`; the device tables' copy has 4), per built row C entries,
and per known state its bound, match index, row number and key; the automaton's own cache is
bounded by bytes. ``nbytes`` reports all of it as it grows. The xgrammar-layout bitmask is
produced for the states asked for (:meth:`TokenIndex.bitmask_rows`), never stored per state:
packed rows are kept in a small LRU keyed by the classes a row allows (states that allow the
same tokens share one), bounded by bytes and counted in ``nbytes``. Once an index has served a
mask, :meth:`TokenIndex.ensure_rows` packs the masks of the rows it builds, and the
exploration's rows are packed when it ends (the first :data:`MASKS_PACKED_EXPLORED`, while the
cache has room), so masks are ready wherever rows are built ahead.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from contextlib import nullcontext

import numpy as np
import torch

from regexlm.collector import collector_paused
from regexlm.errors import EmptyLanguageError, PatternTooComplexError
from regexlm.index import class_trie, native_walk
from regexlm.index.bitmask import pack_bitmask
from regexlm.index.min_tokens import token_distances
from regexlm.index.rows import flat_trie, walk_checked_rows, walk_rows
from regexlm.index.token_classes import (
    EOS_CLASS,
    FIRST_TEXT_CLASS,
    TokenClasses,
    class_dtype,
)

UNREACHABLE = int(np.iinfo(np.int32).max)
EXPLORE_BATCH = 4  # rows built between two checks of the exploration's work limit
# Packed rows kept per index, for repeated masks: this many bytes of them, and never fewer
# than MASKS_KEPT_AT_LEAST rows (16 x 32 KB at 262,144 tokens: a walk that meets a dozen
# distinct masks finds them again)
MASK_CACHE_BYTES = 256 << 10
MASKS_KEPT_AT_LEAST = 16
# Tokens of the smallest classes listed for packing narrow masks from their own tokens, as a
# share of the vocabulary (4 bytes each, counted in nbytes).
SMALL_CLASS_SHARE = 1 / 32
MASKS_PACKED_AHEAD = 8  # ensure_rows packs the masks of at most this many states per call
# States whose cached mask's key is remembered, so that asking again skips the row and the key
# (about MASK_KEY_BYTES each, counted in nbytes); the memo starts afresh when full.
MASK_KEYS_REMEMBERED = 256
MASK_KEY_BYTES = 128
# Once the exploration left for the first use has run, an index serving masks packs those of
# the first rows it built (in the order they were found, the start's neighbourhood first).
MASKS_PACKED_EXPLORED = 64
# Walks of the byte trie that find more than this share of the strings alive from an origin
# make the pattern's class trie, which later rows walk instead.
CLASS_TRIE_WIDTH = 1 / 8
# ... and then its automaton's cache is bounded by this many bytes at most: walks of a class trie
# step one representative character per class and make few states.
CLASS_TRIE_AUTOMATON_BYTES = 128 << 10
# A row build slower than this fraction of the automaton's per-call time limit counts against
# the index's budget of slow rows, this many times that limit: past it, no more rows are built.
SLOW_ROW_FRACTION = 0.25
SLOW_ROWS_BUDGET = 3.0
# A state's key besides its bytes: the bytes object, its list slot and its dict entry.
KEY_ENTRY_BYTES = 33 + 8 + 100


class IndexRows:
    """The host side of an index: numpy tables, and what builds new rows (see module docstring).

    Thread-safe: rows are built under a lock, so a server thread and a decode thread can share
    an index.
    """

    def __init__(
        self,
        automaton,
        vocab,
        patterns: tuple[str, ...],
        *,
        strict: bool = True,
        defer_distances: bool = False,
    ):
        self.patterns = patterns
        self.vocab_size = int(vocab.size)
        self.vocab_fingerprint = vocab.fingerprint
        self.eos_ids = list(vocab.eos_ids)
        self.automaton = automaton
        self.vocab = vocab
        self.trie = flat_trie(vocab)
        # the class trie: None until a wide walk asks for it, False when it cannot be made
        self.class_trie: class_trie.ClassTrie | None | bool = None
        self.usable = usable_bytes(vocab)
        self._init_progress()
        # The byte distances (the bounds in min_tokens) wait for settle where every state's is
        # known to be finite: until then a state's bound reads 0 and only the tests for "no
        # completion" (UNREACHABLE) read the bounds, which they pass, as the true ones would.
        self.distances_later = bool(
            defer_distances
            and not strict
            and hasattr(automaton, "spells_every_label")
            and automaton.spells_every_label(self.usable)
        )
        self.exact = False
        # strict: a target with no known way to complete (bound UNREACHABLE) is not allowed.
        # Off only while exploring, where the exact search decides instead.
        self.strict = strict
        self.classes = initial_classes(vocab).fork()
        # [row capacity, C]: built rows; row 0 allows nothing (the row of states not built yet)
        self.nbc = np.full((16, self.classes.num_classes), -1, dtype=np.int32)
        self.num_rows = 1
        self.row_of = np.zeros(16, dtype=np.int32)  # [capacity]: each state's row
        self.min_tokens = np.full(16, UNREACHABLE, dtype=np.int32)
        self.match = np.full(16, -1, dtype=np.int32)
        self.built = np.zeros(16, dtype=bool)
        self.num_states = 0
        self.keys: list = []
        self.key_bytes = 0  # the keys' own bytes
        self.index_of_key: dict = {}
        self.dfa_of = np.full(16, -1, dtype=np.int64)  # [capacity]: automaton id of a state
        self.state_of_dfa = np.full(64, -1, dtype=np.int64)  # the inverse, for this epoch
        self.epoch = automaton.epoch
        if automaton.start == 0:
            raise EmptyLanguageError(_empty_message(patterns))
        self.start = self._add_state(automaton.start)
        self._check_start()

    def _init_progress(self) -> None:
        """The lock and the counters of what has been built, as a new index starts them (also
        for :func:`complete_rows`, which makes an index without ``__init__``)."""
        self.lock = threading.RLock()
        self.version = 0
        self.rows_built = 0
        self.walked = 0  # (state, token) pairs the walks have found alive: the work done
        self.splits = 0
        self.mask_epoch = 0  # changes when built rows change (pruning, strict masking)
        # changes with mask_epoch, splits and whether the exploration has run: what a state's
        # cached mask depends on besides its row (see TokenIndex._known_mask)
        self.mask_generation = 0
        # the exploration left for later (see settle): (max states or None, max work, descent
        # work), and what to call once it has run
        self.pending: tuple | None = None
        self.exploring = False
        self.on_settled: list = []
        self.settle_seconds = 0.0
        self.exploration_cut = False  # the exploration ran out of time and stopped early
        # a row past the automaton's per-call limits: every later row build raises it again
        self.failure: PatternTooComplexError | None = None
        self.slow_seconds = 0.0  # CPU time of the row builds counted as slow (SLOW_ROW_FRACTION)
        self.distances_later = False  # the bounds of the states so far wait for settle

    @property
    def class_of(self) -> np.ndarray:
        """``uint16[V]`` (``int32`` past 65,536 classes): each token's class (a new array
        whenever a class splits)."""
        return self.classes.class_of

    def _check_start(self) -> None:
        if self.strict and self.min_tokens[self.start] == UNREACHABLE:
            raise EmptyLanguageError(_empty_message(self.patterns))

    # -- states -------------------------------------------------------------------------------

    def _grow(self, need: int) -> None:
        """Room for ``need`` states."""
        cap = self.min_tokens.shape[0]
        if need <= cap:
            return
        cap = max(need, 2 * cap)
        self.row_of = _grown(self.row_of, cap, 0)
        self.min_tokens = _grown(self.min_tokens, cap, UNREACHABLE)
        self.match = _grown(self.match, cap, -1)
        self.built = _grown(self.built, cap, False)
        self.dfa_of = _grown(self.dfa_of, cap, -1)

    def _new_rows(self, states: np.ndarray) -> np.ndarray:
        """``int64[n]``: new rows for ``states`` (not built yet), appended; ``row_of`` names
        them."""
        first = self.num_rows
        need = first + states.size
        if need > self.nbc.shape[0]:
            self.nbc = _grown(self.nbc, max(need, 2 * self.nbc.shape[0]), -1)
        at = np.arange(first, need)
        self.row_of[states] = at
        self.num_rows = need
        return at

    def rows(self, states) -> np.ndarray:
        """``int32[n, C]``: the rows of ``states`` (a copy; all -1 for a state not built)."""
        return self.nbc[self.row_of[states]]

    def row(self, state: int) -> np.ndarray:
        """``int32[C]``: the row of ``state``, a view (all -1 for a state not built)."""
        return self.nbc[self.row_of[state]]

    def _add_state(self, q: int) -> int:
        """The index state of automaton state ``q``, added (with a bound and no row) if new."""
        self._add_states(np.array([q], dtype=np.int64))
        return int(self.state_of_dfa[q])

    def _add_states(self, qs: np.ndarray) -> None:
        """:meth:`_add_state` for many automaton states (keys, match indexes and bounds in one
        call where the automaton can describe several states at once)."""
        a = self.automaton
        describe = getattr(a, "describe", None)
        if describe is not None and self.distances_later:
            keys, match, _ = describe(qs, distances=False)
            dist = np.zeros(len(keys), dtype=np.int32)  # (made exact at settle)
        elif describe is not None:
            keys, match, dist = describe(qs, self.usable)
        else:
            listed = qs.tolist()
            keys = [a.key(q) for q in listed]
            match = [a.match_index(q) for q in listed]
            dist = [a.byte_distance(q, self.usable) for q in listed]
        # one dict pass in Python; the tables are written with numpy
        index_of_key, sids, fresh = self.index_of_key, [], []
        first = self.num_states
        for i, key in enumerate(keys):
            sid = index_of_key.get(key)
            if sid is None:
                sid = index_of_key[key] = first + len(fresh)
                fresh.append(i)
                self.keys.append(key)
                self.key_bytes += _key_size(key)
            sids.append(sid)
        if fresh:
            at = np.asarray(fresh, dtype=np.int64)
            new = np.arange(first, first + at.size)
            self._grow(first + at.size)
            self.num_states = first + at.size
            self.dfa_of[new] = qs[at]
            self.match[new] = np.asarray(match)[at]
            self.min_tokens[new] = np.minimum(np.asarray(dist, dtype=np.int64)[at], UNREACHABLE)
        if qs.size:
            top = int(qs.max())
            if top >= self.state_of_dfa.size:
                self._remember(top, -1)
            self.state_of_dfa[qs] = np.asarray(sids, dtype=np.int64)

    def _find_distances(self) -> None:
        """The byte distances of the states added while they waited (see
        ``distances_later``), before anything reads their values. Called with the lock held."""
        if not self.distances_later:
            return
        n = self.num_states
        qs = self._automaton_states(np.arange(n))
        _, _, dist = self.automaton.describe(qs, self.usable)
        self.min_tokens[:n] = np.minimum(np.asarray(dist, dtype=np.int64), UNREACHABLE)
        self.distances_later = False

    def _remember(self, q: int, sid: int) -> None:
        if q >= self.state_of_dfa.size:
            grown = np.full(max(q + 1, 2 * self.state_of_dfa.size), -1, dtype=np.int64)
            grown[: self.state_of_dfa.size] = self.state_of_dfa
            self.state_of_dfa = grown
        self.state_of_dfa[q] = sid

    def _index_states(self, q: np.ndarray) -> np.ndarray:
        """``int64[n]``: the index state of each automaton state in ``q`` (new ones are added,
        with a bound and no row)."""
        if q.size == 0:
            return np.zeros(0, dtype=np.int64)
        top = int(q.max())
        if top >= self.state_of_dfa.size:
            self._remember(top, -1)
        # automaton ids are small and dense: mark the distinct ones instead of sorting them (a
        # start row names about every token), and add those not known yet
        present = np.zeros(top + 1, dtype=bool)
        present[q] = True
        distinct = np.flatnonzero(present)
        missing = distinct[self.state_of_dfa[distinct] < 0]
        if missing.size:
            self._add_states(missing)
        return self.state_of_dfa[q]

    def _automaton_states(self, states: np.ndarray) -> np.ndarray:
        """Automaton ids of index states, re-made after the automaton cleared its cache."""
        a = self.automaton
        if a.needs_clear():
            a.clear()
        if a.epoch != self.epoch:
            self.dfa_of[:] = -1
            self.state_of_dfa[:] = -1
            self.epoch = a.epoch
        out = self.dfa_of[states]
        if (out < 0).any():
            for i in np.flatnonzero(out < 0).tolist():
                s = int(states[i])
                q = self.dfa_of[s] = a.intern(self.keys[s])
                self._remember(q, s)
                out[i] = q
        return out

    # -- rows ---------------------------------------------------------------------------------

    def ensure(self, states) -> bool:
        """Build the rows of ``states`` not built yet; True if anything changed."""
        states = np.asarray(states, dtype=np.int64).reshape(-1)
        if states.size == 0:
            return False
        if self.pending is not None and (states != self.start).any():
            self.settle()  # ids other than the start come from settled tables
        need = states[~self.built[states]]
        if need.size == 0:
            return False
        with self.lock:
            need = np.unique(need[~self.built[need]])
            if need.size == 0:
                return False
            self._build(need)
            return True

    def _time_limit(self, activity: str):
        """The automaton's bound on the states one call makes (see
        :meth:`regexlm.automata.LazyDFA.time_limit`); none for an eager automaton."""
        limit = getattr(self.automaton, "time_limit", None)
        return nullcontext() if limit is None else limit(activity)

    def _build(self, states: np.ndarray) -> None:
        if self.failure is not None:
            raise PatternTooComplexError(str(self.failure), limit=self.failure.limit)
        started = time.thread_time()
        try:
            with self._time_limit("building the token rows of one decoding step"):
                self._build_rows(states)
        except PatternTooComplexError as exc:
            if not self.exploring:  # the answer for this pattern does not flip afterwards
                self.failure = exc
            raise
        if not self.exploring:
            self._count_slow_rows(time.thread_time() - started)
        self._fit_automaton()

    def _fit_automaton(self) -> None:
        """Clear the automaton's cache now if the walks just made left it over its byte budget
        (the next walk would clear it first anyway): between row builds an index then holds no
        more than the budget, which is what ``nbytes`` reports. A byte-trie walk of a broad
        pattern makes states for every byte sequence it reads, megabytes past the budget."""
        a = self.automaton
        if a.needs_clear():
            a.clear()

    def _count_slow_rows(self, seconds: float) -> None:
        """Each row within the per-call limit, yet a pattern whose rows all take most of it
        would hold a decoder for that long at every step: rows slower than
        :data:`SLOW_ROW_FRACTION` of the per-call limit add up, and past
        :data:`SLOW_ROWS_BUDGET` times that limit the index builds no more rows (everyday rows
        take milliseconds; the heaviest of the benchmark's, at 262k tokens, tens of them)."""
        limit = getattr(self.automaton, "step_timeout", None)
        if limit is None or seconds <= SLOW_ROW_FRACTION * limit:
            return
        self.slow_seconds += seconds
        budget = SLOW_ROWS_BUDGET * limit
        if self.slow_seconds > budget:
            self.failure = PatternTooComplexError(
                f"building the pattern's token rows took {self.slow_seconds:.1f} s of CPU time "
                f"in rows slower than {SLOW_ROW_FRACTION * limit:g} s each, over the limit of "
                f"{budget:g} s; simplify the pattern (nested counted repeats of broad classes "
                "make each row walk many DFA states) or raise timeout",
                limit="timeout",
            )

    def _build_rows(self, states: np.ndarray) -> None:
        origins = self._automaton_states(states)
        classes = (self.classes.class_of, self.classes.size)
        trie = self.class_trie or self.trie
        checked = walk_checked_rows(trie, self.automaton, origins, classes)
        every_state = states
        if checked is None:
            o, strings, q = walk_rows(self.trie, self.automaton, origins)
            self.walked += int(o.size)
            found = int(o.size)
        else:
            o, strings, q, (class_rows, keeps, found) = checked
            self.walked += found
        if checked is not None and keeps.any():
            # rows that split no class: written from the walk's row over classes at once
            self._write_class_rows(states[keeps], class_rows[keeps])
            if keeps.all():
                self._finish_rows(states)
                self._consider_class_trie(found, states.size)
                return
            rest = np.flatnonzero(~keeps)
            states = states[rest]
            if trie is not self.trie:  # the triples name groups: walk the strings
                o, strings, q = walk_rows(self.trie, self.automaton, origins[rest])
            else:
                take = np.isin(o, rest)
                o, strings, q = o[take], strings[take], q[take]
                o = np.searchsorted(rest, o)  # origin positions among the rest
        elif checked is not None and trie is not self.trie:
            o, strings, q = walk_rows(self.trie, self.automaton, origins)
        # the walk's int32 ids as native-width indexes: numpy gathers and scatters with them
        # about three times faster than with int32 ones
        strings, q = strings.astype(np.intp, copy=False), q.astype(np.intp, copy=False)
        tokens = self.trie.tokens(strings)  # never end-of-sequence ids; shadows follow later
        tgt = self._index_states(q)  # new targets get a bound and no row
        if self.strict:  # a target from which no match can be completed is not allowed
            ok = self.min_tokens[tgt] != UNREACHABLE
            if not ok.all():
                o, tokens, tgt = o[ok], tokens[ok], tgt[ok]
        if o.size > 1 and (o[1:] < o[:-1]).any():
            order = np.argsort(o, kind="stable")
            o, tokens, tgt = o[order], tokens[order], tgt[order]
        bounds = np.searchsorted(o, np.arange(states.size + 1, dtype=o.dtype))  # (no cast of o)
        at = self._new_rows(states).tolist()
        for i, state in enumerate(states.tolist()):
            lo, hi = bounds[i], bounds[i + 1]
            old_of_new, row = self.classes.refine(tokens[lo:hi], tgt[lo:hi], self.num_states)
            if old_of_new is not None:
                self.nbc = _with_new_columns(self.nbc, old_of_new)
                self._reshaped(split=True)
            row[EOS_CLASS] = state if self.match[state] >= 0 else -1
            self.nbc[at[i]] = row
        self._finish_rows(every_state)
        self._consider_class_trie(found, every_state.size)

    def _consider_class_trie(self, found: int, origins: int) -> None:
        """Make the pattern's class trie (:mod:`regexlm.index.class_trie`) once walks of the
        byte trie find more than :data:`CLASS_TRIE_WIDTH` of the strings alive from an origin:
        later rows then walk it instead. Tried once: False where it cannot be made or would
        be too large (later rows keep the byte trie)."""
        if self.class_trie is not None or self.trie.num_strings == 0:
            return
        if self.rows_built <= origins:  # the start row, at compile: no time to spare there
            return
        if found <= CLASS_TRIE_WIDTH * self.trie.num_strings * origins:
            return
        made = None
        if class_trie.available(self.automaton):
            made = class_trie.class_trie(self.vocab, self.automaton)
        self.class_trie = made if made is not None else False
        if made is not None:  # its walks make a state per class, not per byte: less room
            a = self.automaton
            a.cache_bytes = min(a.cache_bytes, CLASS_TRIE_AUTOMATON_BYTES)

    def _write_class_rows(self, states: np.ndarray, class_rows: np.ndarray) -> None:
        """Rows given over the current classes as automaton states (-1: not allowed)."""
        named = class_rows >= 0
        tgt = np.full(class_rows.shape, -1, dtype=np.int64)
        tgt[named] = self._index_states(class_rows[named].astype(np.int64))
        if self.strict:  # a target from which no match can be completed is not allowed
            tgt[named & (self.min_tokens[np.maximum(tgt, 0)] == UNREACHABLE)] = -1
        at = self._new_rows(states)
        for state, r, row in zip(states.tolist(), at.tolist(), tgt, strict=True):
            row = row.astype(np.int32)
            row[EOS_CLASS] = state if self.match[state] >= 0 else -1
            self.nbc[r] = row

    def _reshaped(self, *, split: bool) -> None:
        """A class split (new columns) or built rows changed (pruning, strict masking,
        renumbering: a new mask epoch): cached masks no longer apply, and a device copy of the
        table is made again in full (a new :attr:`layout`)."""
        if split:
            self.splits += 1
        else:
            self.mask_epoch += 1
        self.mask_generation += 1

    @property
    def layout(self) -> tuple[int, int]:
        """Changes whenever the columns or the built rows change (see :meth:`_reshaped`);
        between two changes rows are only appended."""
        return self.splits, self.mask_epoch

    def _finish_rows(self, states: np.ndarray) -> None:
        self.built[states] = True
        self.rows_built += int(states.size)
        self.version += 1

    # -- exploration --------------------------------------------------------------------------

    def settle(self) -> None:
        """Run the exploration that compile left pending, once (a no-op afterwards).

        Compile builds only the start row; exploring the states beyond it (exact
        ``min_tokens`` when they are few, else a descent that tightens the bounds) waits until
        something needs more than the start row's mask: the tables a decode step reads, any
        other state's row, a state id. It may renumber states (dropping those that cannot
        complete), except the start, which stays 0, so a caller holds no other id before.
        A failure (no token path completes a match) is raised here and again on every later
        call. An exploration past the automaton's time limit stops where it is and keeps the
        sound bounds (:attr:`exploration_cut`).
        """
        if self.pending is None and not self.exploring:
            return
        with self.lock:  # another thread's exploration in progress: wait for it
            plan = self.pending
            if plan is None:
                return
            max_states, max_work, descent_work = plan
            started = time.perf_counter()
            # (here, outside the optional exploration below: if finding them fails, settle
            # fails and stays pending, rather than going on with bounds that read 0)
            self._find_distances()
            self.pending = None  # the exploration's own row builds do not settle again
            self.mask_generation += 1
            self.exploring = True
            try:
                try:
                    with collector_paused(), self._time_limit("exploring the pattern's states"):
                        if max_states is None or not self.explore(max_states, max_work):
                            self.descend(self.start, max_work=descent_work)
                except PatternTooComplexError:
                    # exploring is optional: stop it where it is and keep the sound bounds
                    self.exploration_cut = True
                    if not self.strict:
                        self._make_strict()
            except BaseException:
                self.pending = plan
                self.mask_generation += 1
                raise
            finally:
                self.exploring = False
            release = getattr(self.automaton, "release_nfa", None)
            if release is not None:  # Python's copy of a large NFA, while time is spare
                release()
            self._fit_automaton()
            self.settle_seconds = time.perf_counter() - started
            assert self.start == 0
            callbacks, self.on_settled = self.on_settled, []
        for callback in callbacks:
            callback()

    def when_settled(self, callback) -> None:
        """Call ``callback()`` once the exploration left pending has run: now if none is."""
        with self.lock:
            if self.pending is not None or self.exploring:
                self.on_settled.append(callback)
                return
        callback()

    def explore(self, max_states: int | None, max_work: int | None = None) -> bool:
        """Build rows breadth-first from the start while at most ``max_states`` rows would be
        built in all and the walks have found at most ``max_work`` live (state, token) pairs
        (None: no limit). When every reachable state has its row, make ``min_tokens`` exact
        and drop the states no token path completes; return whether that happened."""
        with self.lock:
            self._find_distances()
            work_limit = None if max_work is None else self.walked + max_work
            while True:
                todo = np.flatnonzero(~self.built[: self.num_states])
                if todo.size == 0:
                    self._finish_exact()
                    return True
                if max_states is not None and self.rows_built + todo.size > max_states:
                    break
                if work_limit is None:
                    self._build(todo)
                    continue
                lo = 0
                while lo < todo.size:
                    batch = todo[lo : lo + EXPLORE_BATCH]
                    self._build(batch)
                    lo += batch.size
                    if self.walked > work_limit:
                        break
                if self.walked > work_limit:
                    break
            self._make_strict()
            return False

    def descend(
        self, state: int, max_steps: int = 64, branches: int = 4, max_work: int | None = None
    ) -> None:
        """Tighten the bounds along real paths from ``state`` to a match.

        Greedy: from each state take the token whose target has the smallest bound (a bound
        falls by at least one along such a step, so the walk ends at a match). Every state on
        the path then needs at most its remaining steps, a true upper bound; lowering bounds
        this way keeps them consistent, so the budget rule stays sound, and a budget that fits
        the path now guarantees a match even where single bytes would not fit.

        Bounds often tie at the first step (``\\d+|[a-z]+@...``: every branch starts one
        byte from its end), and the branch greedy takes need not be the one with the fewest
        tokens, so up to ``branches`` first steps are tried, while the walks of this descent
        stay within ``max_work`` live pairs (None: no limit); the first is always tried.
        """
        with self.lock:
            self._find_distances()
            if self.match[state] >= 0:
                return
            self.ensure([state])
            row = self.row(state).copy()
            row[EOS_CLASS] = -1
            firsts = np.unique(row[row >= 0])
            firsts = firsts[self.min_tokens[firsts] != UNREACHABLE]
            firsts = firsts[np.argsort(self.min_tokens[firsts], kind="stable")][:branches]
            work_limit = None if max_work is None else self.walked + max_work
            for i, first in enumerate(firsts.tolist()):
                if i and work_limit is not None and self.walked > work_limit:
                    break
                path = self._greedy_path(int(first), max_steps)
                if path is None:
                    continue
                for remaining, node in enumerate(reversed([int(state), *path])):
                    if remaining < self.min_tokens[node]:
                        self.min_tokens[node] = remaining
            self.version += 1

    def _greedy_path(self, state: int, max_steps: int) -> list[int] | None:
        """States from ``state`` to a match, each step to the target with the smallest
        bound; None when no match is reached within ``max_steps``."""
        path = [state]
        cur = state
        for _ in range(max_steps):
            if self.match[cur] >= 0:
                return path
            self.ensure([cur])
            row = self.row(cur).copy()
            row[EOS_CLASS] = -1
            targets = row[row >= 0]
            if targets.size == 0:
                return None
            nxt = int(targets[np.argmin(self.min_tokens[targets])])
            if self.min_tokens[nxt] == UNREACHABLE:
                return None
            path.append(nxt)
            cur = nxt
        return path if self.match[cur] >= 0 else None

    def _make_strict(self) -> None:
        """Leave exploration for rows on demand: deny the tokens of built rows that lead where
        no completion is known (none, with a vocabulary that has every single byte)."""
        self.strict = True
        self._check_start()
        n = self.num_states
        table = self.nbc[: self.num_rows]
        hopeless = np.append(self.min_tokens[:n] == UNREACHABLE, False)  # [-1] -> False
        table[hopeless[table]] = -1
        self._reshaped(split=False)
        self.version += 1

    def _finish_exact(self) -> None:
        n = self.num_states
        nbc = self.rows(np.arange(n))  # [S, C]: every state is built here
        eos_class = EOS_CLASS
        cols = np.ones(nbc.shape[1], dtype=bool)
        cols[eos_class] = False
        origin, target = np.nonzero(nbc[:, cols] >= 0)
        target = nbc[:, cols][origin, target].astype(np.int64)
        pairs = np.unique(origin * n + target)
        keep, dist = token_distances(pairs // n, pairs % n, self.match[:n] >= 0, self.start, n)
        if not keep[self.start]:
            raise EmptyLanguageError(_empty_message(self.patterns))
        kept = np.flatnonzero(keep)
        new_id = np.full(n + 1, -1, dtype=np.int64)  # index n stands for -1
        new_id[kept] = np.arange(kept.size)
        table = nbc[kept].astype(np.int64)
        self.nbc, self.row_of = _row_per_state(new_id[np.where(table >= 0, table, n)])
        self.num_rows = int(self.nbc.shape[0])
        self.min_tokens = dist[kept].astype(np.int32)
        self.match = self.match[kept].copy()
        self.built = np.ones(kept.size, dtype=bool)
        self.dfa_of = self.dfa_of[kept].copy()
        self.state_of_dfa[:] = -1
        known = self.dfa_of >= 0
        self.state_of_dfa[self.dfa_of[known]] = np.flatnonzero(known)
        self.keys = [self.keys[i] for i in kept.tolist()]
        self.key_bytes = sum(_key_size(k) for k in self.keys)
        self.index_of_key = {k: i for i, k in enumerate(self.keys)}
        self.start = int(new_id[self.start])
        self.num_states = int(kept.size)
        self._merge_classes()
        self._reshaped(split=False)
        self.exact = True
        self.version += 1

    def _merge_classes(self) -> None:
        """With every row known: one class per distinct column, and tokens allowed nowhere in
        class 0 (end-of-sequence keeps class 1). Merged classes are numbered in the order of
        their first old class, so when nothing merges nothing is rewritten."""
        num = self.nbc.shape[1]
        text = self.nbc[:, FIRST_TEXT_CLASS:]  # [R, C - 2]
        live = FIRST_TEXT_CLASS + np.flatnonzero((text >= 0).any(axis=0))  # [L]
        new_of_old = np.zeros(num, dtype=np.int64)  # dead text classes -> class 0
        new_of_old[EOS_CLASS] = EOS_CLASS
        num_new = FIRST_TEXT_CLASS
        if live.size:
            block = np.ascontiguousarray(self.nbc[:, live].T)  # [L, R]: a column per class
            keys = block.view(np.dtype((np.void, block.shape[1] * 4))).reshape(-1)
            _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            rank = np.empty(first.size, dtype=np.int64)
            rank[np.argsort(first, kind="stable")] = np.arange(first.size)
            new_of_old[live] = FIRST_TEXT_CLASS + rank[inverse.reshape(-1)]
            num_new += first.size
        if (
            num_new == num
            and (new_of_old[FIRST_TEXT_CLASS:] == np.arange(FIRST_TEXT_CLASS, num)).all()
        ):
            return
        old_of_new = np.zeros(num_new, dtype=np.int64)
        old_of_new[new_of_old[::-1]] = np.arange(num)[::-1]
        old_of_new[0] = 0
        self.nbc = np.ascontiguousarray(self.nbc[:, old_of_new])
        classes = self.classes
        class_of = new_of_old.astype(class_dtype(num_new))[classes.class_of]
        size = np.bincount(new_of_old, weights=classes.size, minlength=num_new).astype(np.int64)
        self.classes = TokenClasses(class_of, size, classes.shadows, classes.shadowed)

    # -- reporting ----------------------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes of the tables as allocated (with their room to grow), the states' keys, the
        class trie, and the automaton: its state cache and what it keeps besides."""
        arrays = (self.nbc, self.row_of, self.min_tokens, self.match, self.built, self.dfa_of)
        arrays += (self.state_of_dfa,)
        tables = self.classes.nbytes + sum(int(a.nbytes) for a in arrays)
        a = self.automaton
        automaton = 0 if a is None else getattr(a, "nbytes", 0) + getattr(a, "kept_nbytes", 0)
        walked = self.class_trie.nbytes if self.class_trie else 0
        keys = self.key_bytes + KEY_ENTRY_BYTES * len(self.keys)
        return int(tables + automaton + walked + keys)


def _key_size(key) -> int:
    """The bytes of a state's key past :data:`KEY_ENTRY_BYTES` (an eager automaton's keys are
    small ints)."""
    return len(key) if type(key) is bytes else 0


def _grown(a: np.ndarray, capacity: int, fill) -> np.ndarray:
    """``a`` with room for ``capacity`` entries along its first axis, the new ones ``fill``."""
    out = np.full((capacity, *a.shape[1:]), fill, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


def _row_per_state(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``int32[S + 1, C]`` rows, ``int32[S]`` row_of) for a table of one row per state: row 0
    allows nothing, state s reads row s + 1."""
    n, width = table.shape
    nbc = np.empty((n + 1, width), dtype=np.int32)
    nbc[0] = -1
    nbc[1:] = table
    return nbc, np.arange(1, n + 1, dtype=np.int32)


def _with_new_columns(nbc: np.ndarray, old_of_new: np.ndarray) -> np.ndarray:
    """``nbc[:, old_of_new]`` for a refinement's map, whose first ``C`` entries are the old
    classes in order: the old columns copied as a block, then the new ones."""
    num = nbc.shape[1]
    out = np.empty((nbc.shape[0], old_of_new.size), dtype=nbc.dtype)  # [capacity, C']
    out[:, :num] = nbc
    out[:, num:] = nbc[:, old_of_new[num:]]
    return out


def complete_rows(
    *, patterns, vocab_fingerprint, eos_ids, start, next_by_class, class_of, min_tokens, match_index
) -> IndexRows:
    """An :class:`IndexRows` with every row given (from the disk cache): no automaton."""
    rows = IndexRows.__new__(IndexRows)
    n = int(next_by_class.shape[0])
    rows.patterns = tuple(patterns)
    rows.vocab_size = int(class_of.shape[0])
    rows.vocab_fingerprint = vocab_fingerprint
    rows.eos_ids = list(eos_ids)
    rows.automaton = None
    rows.vocab = None
    rows.trie = None
    rows.class_trie = False
    rows._init_progress()
    rows.exact = True
    rows.nbc, rows.row_of = _row_per_state(np.asarray(next_by_class))
    rows.num_rows = n + 1
    rows.classes = TokenClasses.of(class_of, int(next_by_class.shape[1]))
    rows.min_tokens = np.ascontiguousarray(min_tokens, dtype=np.int32)
    rows.match = np.ascontiguousarray(match_index, dtype=np.int32)
    rows.built = np.ones(n, dtype=bool)
    rows.num_states = n
    rows.dfa_of = np.full(n, -1, dtype=np.int64)
    rows.state_of_dfa = np.full(0, -1, dtype=np.int64)
    rows.keys, rows.index_of_key, rows.key_bytes = [], {}, 0  # (no automaton to name states)
    rows.start = int(start)
    rows.rows_built = n
    return rows


def initial_classes(vocab) -> TokenClasses:
    """The classes before any row (made once per vocabulary and shared: fork before refining,
    see :meth:`TokenClasses.fork`; never written into). (Not flagged read-only: the C calls
    take a writable array's address a few times quicker.)"""
    found = getattr(vocab, "_initial_classes", None)
    if found is None:
        shadows = flat_trie(vocab).shadows()
        found = vocab._initial_classes = TokenClasses.initial(
            vocab.never_allowed(), vocab.eos_ids, *shadows
        )
    return found


def usable_bytes(vocab) -> np.ndarray:
    """``bool[256]``: bytes that some allowed token spells alone (made once per vocabulary)."""
    found = getattr(vocab, "_usable_bytes", None)
    if found is None:
        never = vocab.never_allowed()
        found = np.zeros(256, dtype=bool)
        for b, n in zip(vocab.token_bytes, never, strict=True):
            if len(b) == 1 and not n:
                found[b[0]] = True
        vocab._usable_bytes = found
    return found


def _empty_message(patterns: tuple[str, ...]) -> str:
    shown = patterns[0] if len(patterns) == 1 else list(patterns)
    return f"no text made of the model's tokens matches {shown!r}"


def _pack_explored(index: TokenIndex):
    """The callback that packs ``index``'s explored masks once it settles, holding it weakly
    (the rows keep their callbacks; an index dropped before settling is not kept alive)."""
    ref = weakref.ref(index)

    def pack() -> None:
        alive = ref()
        if alive is not None and alive._rows.failure is None:
            alive._pack_explored_masks()

    return pack


class TokenIndex:
    """A token index on one device: a view of :class:`IndexRows` with device copies of its
    tables, refreshed when the host tables change (see the module docstring)."""

    def __init__(self, rows: IndexRows, device=None, info: dict | None = None):
        self._rows = rows
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self._tensors: dict[str, torch.Tensor] = {}
        self._synced = -1
        self._bitmask: tuple[int, torch.Tensor] | None = None
        self._class_of_src: np.ndarray | None = None  # host class_of last copied to the device
        self._device_nbc: tuple | None = None  # next_by_class on the device (see _device_rows)
        # copy the tables even on the CPU, as for a device (tests use it to check the copies)
        self._copies_tables = False
        self._masks: OrderedDict = OrderedDict()
        self._masks_lock = threading.Lock()  # the exploration may pack masks on another thread
        # For a repeated mask: the key in ``_masks`` of each state whose mask was packed, valid
        # while the rows' mask generation (``IndexRows.mask_generation``) stays the same.
        self._mask_keys: tuple[int, dict[int, tuple]] = (-1, {})
        self._members: tuple | None = None  # (class_of, its RowPacker) for packing masks
        self._serves_masks = False  # a state's mask was served: pack masks as rows are built
        self.info: dict = {} if info is None else info

    # -- identity -----------------------------------------------------------------------------

    @property
    def patterns(self) -> tuple[str, ...]:
        return self._rows.patterns

    @property
    def vocab_fingerprint(self) -> str:
        return self._rows.vocab_fingerprint

    @property
    def eos_ids(self) -> list[int]:
        return self._rows.eos_ids

    @property
    def start_state(self) -> int:
        return self._rows.start

    @property
    def exact(self) -> bool:
        """Whether every state is built and ``min_tokens`` is exact."""
        return self._settled_rows.exact

    @property
    def _settled_rows(self) -> IndexRows:
        """The rows, once the exploration compile left for the first use has run: whatever
        reads state ids or tables beyond the start row's mask goes through here."""
        self._rows.settle()
        return self._rows

    @property
    def failure(self) -> PatternTooComplexError | None:
        """Why this index can build no more rows (a row past the automaton's per-call limits,
        see :meth:`regexlm.automata.LazyDFA.time_limit`), or None. Every later row build raises
        it again; a service refuses the pattern from then on."""
        return self._rows.failure

    @property
    def settled(self) -> bool:
        """Whether the exploration compile left for the first use has run."""
        return self._rows.pending is None and not self._rows.exploring

    def settle(self) -> TokenIndex:
        """Run the exploration compile left for the first use now (see
        :meth:`IndexRows.settle`); decoders may call it beside the model's forward pass."""
        self._rows.settle()
        return self

    @property
    def version(self) -> int:
        """Changes whenever the tables grow or are replaced."""
        return self._rows.version

    @property
    def device(self) -> torch.device:
        return self._device

    # -- tables -------------------------------------------------------------------------------

    def _sync(self) -> dict[str, torch.Tensor]:
        rows = self._rows
        rows.settle()
        if self._synced == rows.version:
            return self._tensors
        # Made as ordinary tensors even when a decoder calls under torch.inference_mode: they
        # outlive the call and are shared with other threads.
        with rows.lock, torch.inference_mode(False):
            n = rows.num_states
            host = {
                "next_by_class": rows.nbc[: rows.num_rows],
                "row_of": rows.row_of[:n],
                "class_of": rows.class_of,
                "min_tokens": rows.min_tokens[:n],
                "match_index": rows.match[:n],
            }
            version = rows.version
            on_host = self._device.type == "cpu" and not self._copies_tables
            old = self._tensors.get("class_of")
            tensors = {}
            for k, v in host.items():
                if k == "class_of":
                    if old is not None and self._class_of_src is v:
                        tensors[k] = old  # unchanged since the last copy
                        continue
                    v = v.astype(np.int32)  # [V] as the step reads it (kept narrower)
                elif k == "next_by_class" and not on_host:
                    tensors[k] = self._device_rows(rows)
                    continue
                tensor = torch.from_numpy(np.ascontiguousarray(v))
                tensors[k] = tensor if on_host else tensor.to(self._device, non_blocking=True)
            self._class_of_src = host["class_of"]
            self._tensors = tensors
            self._synced = version
        return tensors

    def host_tables(self) -> dict[str, np.ndarray]:
        """The tables as new host arrays in the step's dtypes (``int32``), once settled, with
        ``next_by_class`` as one row per state (no ``row_of``): what the disk cache writes, with
        no device copy made."""
        rows = self._settled_rows
        with rows.lock:
            n = rows.num_states
            return {
                "next_by_class": rows.rows(np.arange(n)),  # [S, C]
                "class_of": rows.class_of.astype(np.int32),  # [V]
                "min_tokens": rows.min_tokens[:n].copy(),  # [S]
                "match_index": rows.match[:n].copy(),  # [S]
            }

    def _device_rows(self, rows: IndexRows) -> torch.Tensor:
        """``next_by_class`` on the device, ``int32[R, C]``: a view of a buffer with room for
        more rows. Built rows never change while the rows keep the same
        :attr:`IndexRows.layout`: then only the rows built since the last copy are appended (a
        buffer out of room is doubled on the device); otherwise (class splits, pruning,
        renumbering) the table is sent whole, into a buffer with room for twice its rows.
        Called with the rows' lock held."""
        n, width = rows.num_rows, rows.nbc.shape[1]
        layout = rows.layout
        kept = self._device_nbc  # (layout, buffer [capacity, C], rows sent) or None
        if kept is not None and kept[0] == layout:
            _, buf, old_n = kept
            if n > buf.shape[0]:  # out of room: a larger buffer, the rows moved on the device
                grown = torch.empty((2 * n, width), dtype=torch.int32, device=self._device)
                grown[:old_n].copy_(buf[:old_n])
                buf = grown
            if n > old_n:  # the rows built since
                buf[old_n:n].copy_(torch.from_numpy(rows.nbc[old_n:n]), non_blocking=True)
            self.info["device_rows_sent"] = self.info.get("device_rows_sent", 0) + max(0, n - old_n)
        else:
            room = n if rows.exact else max(16, 2 * n)  # an exact index gains no rows
            buf = torch.empty((room, width), dtype=torch.int32, device=self._device)
            buf[:n].copy_(torch.from_numpy(rows.nbc[:n]), non_blocking=True)
            self.info["device_tables_sent"] = self.info.get("device_tables_sent", 0) + 1
        self._device_nbc = (layout, buf, n)
        return buf[:n]

    @property
    def next_by_class(self) -> torch.Tensor:  # [R, C] int32
        """The built rows; state ``s`` reads row ``row_of[s]``."""
        return self._sync()["next_by_class"]

    @property
    def row_of(self) -> torch.Tensor:  # [S] int32
        """Each state's row of :attr:`next_by_class` (0, a row that allows nothing, for a state
        whose row is not built)."""
        return self._sync()["row_of"]

    def rows_of(self, states) -> torch.Tensor:
        """``int32[n, C]``: the rows of ``states`` (ints or an int tensor) as the step reads
        them (all -1 for a state whose row is not built), on the index's device."""
        t = self._sync()
        at = torch.as_tensor(states, dtype=torch.long, device=t["row_of"].device)
        return t["next_by_class"][t["row_of"][at].long()]

    @property
    def class_of(self) -> torch.Tensor:  # [V] int32
        return self._sync()["class_of"]

    @property
    def min_tokens(self) -> torch.Tensor:  # [S] int32
        return self._sync()["min_tokens"]

    @property
    def match_index(self) -> torch.Tensor:  # [S] int32
        return self._sync()["match_index"]

    @property
    def dfa_state(self) -> torch.Tensor:
        """``int32[S]``: the automaton state of each index state (for eager automata, whose ids
        never change)."""
        rows = self._settled_rows
        return torch.from_numpy(rows.dfa_of[: rows.num_states].astype(np.int32))

    @property
    def bitmask(self) -> torch.Tensor:
        """``int32[S, W]`` allowed-token masks of every state (built rows only are meaningful).

        Made on each change of the tables, for integrations and tests that want every row;
        a decoder asks for the rows it needs with :meth:`bitmask_rows`."""
        self._rows.settle()  # every state: ids beyond the start come from settled tables
        cached = self._bitmask
        if cached is not None and cached[0] == self.version:
            return cached[1]
        packed = self.bitmask_rows(torch.arange(self.num_states))
        self._bitmask = (self.version, packed)
        return packed

    def ensure_rows(self, states) -> None:
        """Build the rows of ``states`` (ints or an int tensor) that are not built yet.

        Once the index has served a state's bitmask on the CPU, the masks of the rows built
        here are packed too, so a caller that builds rows ahead (beside a forward pass) has
        the masks ready as well, and a mask asked for later is a lookup. States whose rows
        exist cost nothing more."""
        if isinstance(states, torch.Tensor):
            states = states.detach().to("cpu").numpy()
        rows = self._settled_rows
        new = ()
        if self._serves_masks:
            states = np.asarray(states, dtype=np.int64).reshape(-1)
            if states.size <= MASKS_PACKED_AHEAD:
                new = states[~rows.built[states]].tolist()
        rows.ensure(states)
        for state in new:
            self._cached_row(state)

    def tables(self):
        """The tables one sampling step reads, as they are now."""
        return self

    def bitmask_rows(self, states) -> torch.Tensor:
        """``int32[n, W]`` allowed-token masks of ``states`` in the xgrammar layout (bit ``j`` of
        word ``w`` is token ``32w + j``); rows are built first where needed."""
        if type(states) is list and len(states) == 1 and self._device.type == "cpu":
            found = self._known_mask(states[0])
            if found is not None:  # a repeated mask: no rows, no key to make
                return torch.from_numpy(found.reshape(1, -1).copy())
        if isinstance(states, torch.Tensor):
            states = states.detach().to("cpu").numpy()
        states = np.asarray(states, dtype=np.int64).reshape(-1)
        if self._device.type == "cpu" and states.size == 1:
            return torch.from_numpy(self._host_mask(int(states[0])).reshape(1, -1).copy())
        self._rows.ensure(states)
        if (self._device.type == "cpu" and states.size <= 64) or self._rows.pending is not None:
            # (pending: only the start row is asked for, which needs no settled tables)
            return torch.from_numpy(self._pack_host(states)).to(self._device)
        t = self._sync()
        at = t["row_of"][torch.from_numpy(states).to(self._device)].long()  # [n]
        allowed = t["next_by_class"][at] >= 0  # [n, C]
        return pack_bitmask(allowed, t["class_of"].long(), self.vocab_size)

    def mask(self, state: int) -> np.ndarray:
        """The xgrammar-layout mask of one state, ``int32[W]``, as a read-only view of the
        cached packed row: nothing is copied, so a mask already packed costs a lookup
        (:meth:`bitmask_rows` and :meth:`fill_bitmask` copy it). The row is built and packed
        first where needed. The array stays valid after the cache lets it go (it is never
        written again); copy it to change it."""
        found = self._known_mask(state)
        if found is not None:
            return found
        state, rows = int(state), self._rows
        if state != rows.start:
            rows.settle()  # ids other than the start come from settled tables
        if not 0 <= state < rows.num_states:
            raise IndexError(f"state {state} is out of range: the index has {rows.num_states}")
        return self._host_mask(state)

    def fill_bitmask(self, out: torch.Tensor, states, index: int = 0) -> None:
        """Write the masks of ``states`` (as for :meth:`bitmask_rows`) into rows ``index``,
        ``index + 1``, ... of ``out``, an ``int32[B, W]`` tensor the caller keeps between steps,
        as xgrammar's and llguidance's ``fill_next_token_bitmask`` do: a repeated mask on the
        CPU is then one copy into memory that is already there."""
        words = (self.vocab_size + 31) // 32
        if out.dim() != 2 or out.shape[1] != words:
            raise ValueError(
                f"out has shape {tuple(out.shape)}; it must be [batch, {words}] "
                f"(32 tokens a word for {self.vocab_size} tokens)"
            )
        if isinstance(states, (int, np.integer)):
            states = [int(states)]
        if (
            type(states) is list
            and len(states) == 1
            and self._device.type == "cpu"
            and out.device.type == "cpu"
            and out.dtype == torch.int32
        ):
            found = self._known_mask(states[0])
            if found is None:  # built and packed once, then copied straight into out
                found = self._host_mask(int(states[0]))
            np.copyto(out.numpy()[index], found)
            return
        masks = self.bitmask_rows(states)  # [n, W]
        out[index : index + masks.shape[0]].copy_(masks)

    def _host_mask(self, state: int) -> np.ndarray:
        """One state's packed mask on the host (``int32[W]``, read-only, cached): its row is
        built first where needed. What :meth:`bitmask_rows` and :meth:`fill_bitmask` copy out
        for a single state."""
        self._rows.ensure(np.array([state], dtype=np.int64))
        self._serve_masks()
        return self._cached_row(state)

    def _serve_masks(self) -> None:
        """Note that single masks are asked for: from now on ensure_rows packs the masks of the
        rows it builds, and the exploration's rows are packed when it ends."""
        if not self._serves_masks:
            self._serves_masks = True
            if self._rows.pending is not None:
                self._rows.when_settled(_pack_explored(self))

    def _cached_row(self, state: int) -> np.ndarray:
        """One state's packed row, kept in a small byte-bounded LRU keyed by the classes the
        row allows (with the partition they refer to): a mask depends on nothing else, so states
        that allow the same classes (every count of ``.{0,500}`` but the last) share one, and a
        repeated mask costs a lookup. The state's key is noted for :meth:`_known_mask`."""
        rows = self._rows
        with rows.lock:
            nbc, class_of = self._final_rows(np.array([state])), rows.class_of  # [1, C], [V]
            packer = self._packer(nbc.shape[1])
            generation = rows.mask_generation
            key = (rows.mask_epoch, rows.splits, np.packbits(nbc[0] >= 0).tobytes())
        with self._masks_lock:
            memo = self._mask_keys
            if memo[0] != generation or len(memo[1]) >= MASK_KEYS_REMEMBERED:
                self._mask_keys = (generation, {})
            self._mask_keys[1][state] = key
            found = self._masks.get(key)
            if found is not None:
                self._masks.move_to_end(key)
                return found
        found = self._pack_final(nbc, class_of, packer)[0]
        found.flags.writeable = False  # handed out as a view by mask(); copied elsewhere
        with self._masks_lock:
            self._masks[key] = found
            while len(self._masks) > self._masks_room():
                self._masks.popitem(last=False)
        return found

    def _known_mask(self, state) -> np.ndarray | None:
        """The cached packed mask of ``state`` if it was packed in this mask generation and is
        still cached; None otherwise (the caller takes the full path)."""
        generation, keys = self._mask_keys
        if generation != self._rows.mask_generation:
            return None
        key = keys.get(state)
        if key is None:
            return None
        masks = self._masks
        found = masks.get(key)  # (one call each, atomic: no lock on this path)
        if found is not None:
            try:
                masks.move_to_end(key)
            except KeyError:  # let go by another thread just now; the array stays valid
                pass
        return found

    def _masks_room(self) -> int:
        """How many packed masks (``int32[W]`` each) the cache holds: :data:`MASK_CACHE_BYTES`
        of them, at least :data:`MASKS_KEPT_AT_LEAST` (and one)."""
        fit = MASK_CACHE_BYTES // (4 * ((self.vocab_size + 31) // 32))
        return max(1, MASKS_KEPT_AT_LEAST, fit)

    def _pack_explored_masks(self) -> None:
        """Pack the masks of the rows the exploration built, the first
        :data:`MASKS_PACKED_EXPLORED` of them, while the mask cache has room: a state's first
        mask is then a lookup too, as for the rows :meth:`ensure_rows` builds."""
        rows = self._rows
        room = self._masks_room()
        with rows.lock:
            built = np.flatnonzero(rows.built)[:MASKS_PACKED_EXPLORED].tolist()
        for state in built:
            if len(self._masks) >= room:
                break
            self._cached_row(state)

    def _pack_host(self, states: np.ndarray, native: bool = True) -> np.ndarray:
        """A few rows packed on the host: in C where it is built (a pass over ``class_of`` per
        row, or the tokens of the small classes), else with numpy, the reference."""
        rows = self._rows
        with rows.lock:
            nbc, class_of = self._final_rows(states), rows.class_of
            packer = self._packer(nbc.shape[1]) if native else None
        return self._pack_final(nbc, class_of, packer)

    def _pack_final(self, nbc: np.ndarray, class_of: np.ndarray, packer) -> np.ndarray:
        """``int32[n, W]`` masks of rows ``nbc int32[n, C]`` over ``class_of``: with ``packer``
        in C; without, with numpy (gather each token's flag, fold 8 to a byte, LSB first)."""
        if packer is not None:
            return packer.pack(nbc)
        words = (self.vocab_size + 31) // 32
        flags = np.zeros((nbc.shape[0], words * 32), dtype=bool)  # [n, 32W]
        flags[:, : self.vocab_size] = (nbc >= 0)[:, class_of]
        packed = np.packbits(flags, axis=1, bitorder="little")  # [n, 4W] bytes
        return np.ascontiguousarray(packed).view("<i4").astype(np.int32, copy=False)

    def _packer(self, num_classes: int):
        """The C packer for the current ``class_of`` (None without C), made again when the
        classes change. Once the exploration has run it lists the tokens of the smallest
        classes (:data:`SMALL_CLASS_SHARE` of the vocabulary at most, see
        :func:`native_walk.small_class_members`), so a narrow or nearly full row's mask is
        packed from those tokens alone; not for the start row's mask at compile, where listing
        would cost a pass of its own. Called with the rows' lock held."""
        rows = self._rows
        class_of = rows.class_of
        found = self._members
        stale = found is None or found[0] is not class_of
        if not stale and (found[1].members is not None or rows.pending is not None):
            return found[1]
        if native_walk.library() is None:
            return None
        members = None
        if rows.pending is None:
            cap = int(self.vocab_size * SMALL_CLASS_SHARE)
            counts = rows.classes.token_counts()  # (known: no pass over class_of to count)
            members = native_walk.small_class_members(class_of, num_classes, cap, counts)
        self._members = (class_of, native_walk.RowPacker(class_of, self.vocab_size, members))
        return self._members[1]

    def _final_rows(self, states: np.ndarray) -> np.ndarray:
        """``int32[n, C]`` rows of ``states`` as the mask shows them: before the exploration has
        run (only the start row exists), a target no single-byte path completes is left out,
        as every row built on demand does (see the module docstring); there is none where the
        distances wait for the exploration."""
        rows = self._rows
        nbc = rows.rows(states)  # [n, C]
        if rows.pending is not None and not rows.strict and not rows.distances_later:
            hopeless = np.append(rows.min_tokens[: rows.num_states] == UNREACHABLE, False)
            nbc[hopeless[nbc]] = -1  # [-1] -> False
        return nbc

    # -- sizes --------------------------------------------------------------------------------

    @property
    def num_states(self) -> int:
        return self._settled_rows.num_states

    @property
    def num_classes(self) -> int:
        return int(self._settled_rows.nbc.shape[1])

    @property
    def vocab_size(self) -> int:
        return self._rows.vocab_size

    @property
    def nbytes(self) -> int:
        """Bytes held by the index, its automaton's cache and its cached masks, now; on the
        CPU, also the step's ``int32`` copy of ``class_of`` once a step has read the tables."""
        members = self._members[1].members if self._members is not None else None
        listed = sum(int(a.nbytes) for a in members) if members is not None else 0
        remembered = MASK_KEY_BYTES * len(self._mask_keys[1])
        masks = sum(int(m.nbytes) for m in self._masks.values())
        stepped = self._tensors.get("class_of") if self._device.type == "cpu" else None
        step_copy = int(stepped.nbytes) if stepped is not None else 0
        return self._rows.nbytes + masks + listed + remembered + step_copy

    # -- per-state queries (host) -------------------------------------------------------------

    def next_state(self, state: int, token: int) -> int:
        """State after ``token`` at ``state``; -1 if the token is not allowed there."""
        rows = self._settled_rows
        rows.ensure([state])
        return int(rows.row(state)[rows.class_of[token]])

    def allowed_tokens(self, state: int) -> torch.Tensor:
        """``int64[n]`` ids allowed at ``state``, ascending."""
        rows = self._settled_rows
        rows.ensure([state])
        ok = rows.row(state)[rows.class_of] >= 0
        return torch.from_numpy(np.flatnonzero(ok))

    def can_extend(self, state: int) -> bool:
        """Whether a token other than end-of-sequence is allowed at ``state``."""
        rows = self._settled_rows
        rows.ensure([state])
        row = rows.row(state).copy()
        row[EOS_CLASS] = -1
        row[0] = -1
        return bool((row >= 0).any())

    def min_tokens_to_match(self, state: int) -> int:
        return int(self._settled_rows.min_tokens[state])

    def is_match(self, state: int) -> bool:
        return self.match_of(state) >= 0

    def match_of(self, state: int) -> int:
        """Lowest matching pattern index at ``state``, -1 if none."""
        return int(self._settled_rows.match[state])

    def to(self, device) -> TokenIndex:
        device = torch.device(device)
        if device == self._device:
            return self
        return TokenIndex(self._rows, device, info=self.info)

    def __repr__(self) -> str:
        kind = "exact" if self.exact else "lazy"
        return (
            f"TokenIndex(patterns={self.patterns!r}, states={self.num_states}, "
            f"classes={self.num_classes}, vocab={self.vocab_size}, {kind}, device={self.device})"
        )
