"""Token classes: the tokens that no row built so far tells apart.

The step reads a row per state over *classes*, not tokens:
``next_by_class[row_of[state], class_of[t]]``.
Two tokens may share a class as long as every row built so far sends them to the same place.
Rows are built one at a time as decoding reaches states, so the partition starts coarse and is
refined by each new row:

* class 0 holds the tokens never allowed (special ids, empty bytes), class 1 end-of-sequence;
  neither is ever split;
* class 2 starts with every other token;
* a new row gives some tokens a target (the *touched* tokens) and leaves the rest not allowed.
  A class whose touched tokens all go to one target, and which is either wholly touched or not
  touched at all, stays whole. Any other class is split by target: its untouched rest keeps the
  id, or, when it has none, its first group does; every other group gets a new id, whose column
  in the earlier rows is a copy of its old class's.

Token ids that spell the same bytes as another (a string's ids after its first) are *shadows*:
rows never name them, and they follow their first token's class after every split; class sizes
count the tokens rows can name.

``class_of`` takes two bytes a token (``uint16``) while there are at most 65,536 classes, four
(``int32``) past that: at 262,144 tokens that is half a megabyte per pattern. The step's device
tables read it as ``int32`` (:meth:`regexlm.index.TokenIndex.class_of`).

A row costs in proportion to the tokens it touches and the number of classes, never a pass over
the vocabulary, except the copy of ``class_of`` when a class splits: readers in other threads
may hold the old ``class_of`` with the old table, so a split makes new arrays instead of
writing into them. The C code (``token_classes.c``) refines where it is built, with the same
numbering; the numpy code here is the reference the tests hold it to (a start row names nearly
every token: at 262,144 tokens the C code takes about a third of numpy's time).
"""

from __future__ import annotations

import numpy as np

NEVER_CLASS = 0
EOS_CLASS = 1
FIRST_TEXT_CLASS = 2
# the most classes a uint16 class_of can name
NARROW_CLASSES = 1 << 16


def class_dtype(num_classes: int) -> type:
    """The dtype of ``class_of`` for ``num_classes`` classes: ``uint16`` while they fit."""
    return np.uint16 if num_classes <= NARROW_CLASSES else np.int32


class TokenClasses:
    """``class_of uint16[V]`` (``int32[V]`` past 65,536 classes) and ``size int64[C]``,
    refined row by row (see the module docstring)."""

    _NO_SHADOWS = np.zeros(0, dtype=np.int64)

    def __init__(self, class_of, size, shadows=_NO_SHADOWS, shadowed=_NO_SHADOWS):
        self.class_of = class_of  # uint16[V] or int32[V] (see class_dtype)
        self.size = size  # int64[C], shadows not counted
        self.shadows = shadows  # int64[K] token ids that follow ...
        self.shadowed = shadowed  # int64[K] ... these tokens' classes

    @classmethod
    def initial(cls, never, eos_ids, shadows=_NO_SHADOWS, shadowed=_NO_SHADOWS) -> TokenClasses:
        """Before any row: never-allowed ids, end-of-sequence ids, and all the rest."""
        class_of = np.where(np.asarray(never, dtype=bool), NEVER_CLASS, FIRST_TEXT_CLASS)
        class_of = class_of.astype(class_dtype(FIRST_TEXT_CLASS + 1))
        if len(eos_ids):
            class_of[np.asarray(eos_ids, dtype=np.int64)] = EOS_CLASS
        num = FIRST_TEXT_CLASS + int((class_of == FIRST_TEXT_CLASS).any())
        size = np.bincount(class_of, minlength=num).astype(np.int64)
        np.subtract.at(size, class_of[shadows], 1)
        return cls(class_of, size, shadows, shadowed)

    @classmethod
    def of(cls, class_of: np.ndarray, num_classes: int) -> TokenClasses:
        """Classes as given (a complete index read back from disk)."""
        class_of = np.ascontiguousarray(class_of, dtype=class_dtype(num_classes))
        return cls(class_of, np.bincount(class_of, minlength=num_classes).astype(np.int64))

    def copy(self) -> TokenClasses:
        return TokenClasses(self.class_of.copy(), self.size.copy(), self.shadows, self.shadowed)

    def fork(self) -> TokenClasses:
        """Classes of their own over the same arrays, copied by nothing: refining replaces
        ``class_of`` and ``size``, never writes into them (readers in other threads may hold
        them), so one set of initial classes serves every index of a vocabulary without a copy
        of ``class_of`` per pattern (half a megabyte at 262,144 tokens)."""
        return TokenClasses(self.class_of, self.size, self.shadows, self.shadowed)

    def token_counts(self) -> np.ndarray:
        """``int64[C]``: each class's number of tokens, shadows included (``size`` leaves
        them out)."""
        counts = self.size.copy()
        if self.shadows.size:
            counts += np.bincount(self.class_of[self.shadows], minlength=counts.size)
        return counts

    @property
    def num_classes(self) -> int:
        return int(self.size.size)

    @property
    def nbytes(self) -> int:
        return int(self.class_of.nbytes + self.size.nbytes)

    def refine(self, tokens: np.ndarray, targets: np.ndarray, num_targets: int, native=True):
        """Refine by one row: ``tokens int64[T]`` (distinct text tokens) go to ``targets
        int64[T]`` (in ``[0, num_targets)``), every other token is not allowed.

        Returns ``(old_of_new, row)``: ``old_of_new int64[C']`` the old class of each class now
        (None when nothing split), and ``row int32[C']`` the new row over the classes now.
        With ``native`` (the default) the C code (``token_classes.c``) does the same where it
        is built; ``native=False`` uses numpy alone, the reference.
        """
        row = np.full(self.num_classes, -1, dtype=np.int32)
        if tokens.size == 0:
            return None, row
        if native:
            from regexlm.index import native_walk

            refined = native_walk.refine_classes(self, tokens, targets)
            if refined is not None:
                class_of, size, old_of_new, row = refined
                if class_of is not None:
                    self.class_of, self.size = class_of, size
                return old_of_new, row
        num = self.num_classes
        coarse = self.class_of[tokens].astype(np.int64)  # [T]
        first = np.full(num, -2, dtype=np.int64)
        first[coarse] = targets  # one target of each touched class (any one)
        uniform = first[coarse] == targets  # [T]
        touched = np.bincount(coarse, minlength=num)  # [C]
        whole = touched[coarse] == self.size[coarse]  # [T]
        old_of_new = None
        if not (uniform.all() and whole.all()):
            old_of_new = self._split(tokens, targets, coarse, uniform & whole, num_targets)
            row = np.full(self.num_classes, -1, dtype=np.int32)
        row[self.class_of[tokens]] = targets
        return old_of_new, row

    def _split(self, tokens, targets, coarse, fine, num_targets) -> np.ndarray:
        num = self.num_classes
        splitting = np.zeros(num, dtype=bool)
        splitting[coarse[~fine]] = True
        sub = np.flatnonzero(splitting[coarse])  # touched tokens of the classes that split
        sub_class, sub_target = coarse[sub], targets[sub]
        keys = sub_class * (num_targets + 1) + sub_target
        groups, inv = _unique_sorted(keys, num * (num_targets + 1))  # sorted by class
        group_class = groups // (num_targets + 1)  # [G]
        group_size = np.bincount(inv, minlength=groups.size)
        in_groups = np.bincount(group_class, weights=group_size, minlength=num)
        has_rest = self.size > in_groups  # [C]
        # a class with no untouched rest: its first group (groups are sorted by class) keeps it
        first_of_class = np.ones(groups.size, dtype=bool)
        first_of_class[1:] = group_class[1:] != group_class[:-1]
        keeps = first_of_class & ~has_rest[group_class]
        extra = int((~keeps).sum())
        new_id = np.empty(groups.size, dtype=np.int64)
        new_id[keeps] = group_class[keeps]
        new_id[~keeps] = np.arange(num, num + extra)
        wide = self.class_of.dtype == np.int32
        class_of = self.class_of.astype(np.int32 if wide else class_dtype(num + extra))  # a copy
        class_of[tokens[sub]] = new_id[inv]
        class_of[self.shadows] = class_of[self.shadowed]
        moved = np.bincount(group_class[~keeps], weights=group_size[~keeps], minlength=num)
        size = np.concatenate([self.size - moved.astype(np.int64), group_size[~keeps]])
        self.class_of, self.size = class_of, size
        return np.concatenate([np.arange(num), group_class[~keeps]])


def _unique_sorted(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of ``keys`` (in ``[0, bound)``) and each key's rank among them."""
    if bound <= 4 * keys.size + 4096:
        present = np.zeros(bound, dtype=bool)
        present[keys] = True
        rank = np.cumsum(present) - 1
        return np.flatnonzero(present), rank[keys]
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.reshape(-1)
