"""Token classes: tokens that lead to the same place from every state share one column.

After pruning, each behaviour group (a set of token strings, see :mod:`regexlm.index.build`)
has a column: the next state from every index state, or -1. Many groups have the same column
(every ASCII letter in ``[a-z]+``, every digit run of one length in ``\\d+``), so the index
stores ``next_by_class[S, C]`` and ``class_of[V]`` instead of a ``[S, V]`` table.

Columns are compared through a hash: ``h(g) = sum over its edges of r[s] * (2 * target + 1)``
in wrapping 64-bit arithmetic, with ``r`` random odd multipliers. Equal columns get equal hashes;
different columns collide with probability about ``2**-40``. The result is then checked
exactly (every edge agrees with its class's column, and every column has as many entries as
each of its groups); a collision is retried with fresh multipliers, so classes are always exact.

Small edge lists on the CPU are classed with numpy, whose per-operation cost is a fraction of
torch's; the steps and the result are the same.

Class 0 is reserved for "never allowed" (an all -1 column): special ids, empty tokens, and
tokens dead from every state.
"""

from __future__ import annotations

import numpy as np
import torch

from regexlm.index.build import random_multipliers

_ATTEMPTS = 4
# Class edge lists up to this long with numpy when they are on the CPU.
HOST_MAX_EDGES = 65536


def group_classes(
    origin: torch.Tensor,
    group: torch.Tensor,
    target: torch.Tensor,
    num_groups: int,
    num_states: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(class_of_group int64[G], next_by_class int32[S, C])`` for edges ``origin -g-> target``.

    States are index states ``0 .. num_states - 1``; groups without edges get class 0.
    """
    device = origin.device
    if device.type == "cpu" and origin.numel() <= HOST_MAX_EDGES:
        return _group_classes_host(origin, group, target, num_groups, num_states)
    counts = torch.bincount(group, minlength=num_groups)  # [G] entries per column
    for attempt in range(_ATTEMPTS):
        r = random_multipliers(1, num_states, 0x5EED + attempt, device)[0]
        h = torch.zeros(num_groups, dtype=torch.int64, device=device)
        h.index_add_(0, group, r[origin] * (2 * target + 1))
        # distinct non-empty columns -> classes 1.., empty -> 0
        nonempty = counts > 0
        uniq, inv = torch.unique(h[nonempty], return_inverse=True)
        class_of_group = torch.zeros(num_groups, dtype=torch.int64, device=device)
        class_of_group[nonempty] = inv + 1
        num_cls = uniq.numel() + 1
        table = torch.full((num_states, num_cls), -1, dtype=torch.int64, device=device)
        cls = class_of_group[group]
        table[origin, cls] = target
        agree = bool((table[origin, cls] == target).all())
        filled = (table >= 0).sum(0)  # [C] entries per class column
        if agree and bool((filled[class_of_group[nonempty]] == counts[nonempty]).all()):
            return class_of_group, table.to(torch.int32)
    raise RuntimeError("token class hashing collided repeatedly")  # pragma: no cover


def _group_classes_host(origin, group, target, num_groups: int, num_states: int):
    """:func:`group_classes` with numpy (CPU tensors; the same hashes, so the same classes)."""
    o, g, t = origin.numpy(), group.numpy(), target.numpy()
    counts = np.bincount(g, minlength=num_groups)  # [G] entries per column
    nonempty = counts > 0
    for attempt in range(_ATTEMPTS):
        r = random_multipliers(1, num_states, 0x5EED + attempt, origin.device)[0].numpy()
        h = np.zeros(num_groups, dtype=np.int64)
        np.add.at(h, g, r[o] * (2 * t + 1))  # wraps like torch's int64
        uniq, inv = np.unique(h[nonempty], return_inverse=True)
        class_of_group = np.zeros(num_groups, dtype=np.int64)
        class_of_group[nonempty] = inv.reshape(-1) + 1
        table = np.full((num_states, uniq.size + 1), -1, dtype=np.int64)
        cls = class_of_group[g]
        table[o, cls] = t
        agree = bool((table[o, cls] == t).all())
        filled = (table >= 0).sum(0)  # [C] entries per class column
        if agree and bool((filled[class_of_group[nonempty]] == counts[nonempty]).all()):
            return torch.from_numpy(class_of_group), torch.from_numpy(table.astype(np.int32))
    raise RuntimeError("token class hashing collided repeatedly")  # pragma: no cover
