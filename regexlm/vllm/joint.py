"""One masked write for a whole vLLM batch whose rows follow different patterns.

Each pattern's index sorts the vocabulary into its own token classes (``class_of int32[V]``);
the processor decides per row which of its pattern's classes are allowed (a few hundred
booleans, on the host). To mask the logits of every row with one gather, the rows must share
one class numbering. The *joint* classes are the ones of all patterns in the batch at once:
two tokens share a joint class when they share a class in every pattern (and both or neither
is end-of-sequence, which rows that must stop need apart). Every joint class ``j`` has a
representative token ``first[j]``, and its class in pattern ``k`` is ``class_of_k[first[j]]``;
so a row's decision over its own classes becomes one over the joint classes by a lookup.

Per step, for ``B`` rows, ``J`` joint classes and logits ``[B, V]``::

    forbid  bool[B, J]   host -> device (small)
    mask    bool[B, V] = forbid[:, joint_of_token]      one gather on the device
    logits.masked_fill_(mask, -inf)                     one masked write

(On the CPU the mask is a float bias of 0 / -inf and the write is ``logits.add_(bias)``, which
torch vectorises where ``masked_fill_`` is an order of magnitude slower.)

A step whose class decisions equal the last step's (rows that stay in their states, as free
text often does) reuses the last mask and skips the gather.

Rows without a constraint forbid nothing. The joint classes are rebuilt only when the set of
patterns in the batch (or a pattern's ``class_of``, which an index built on demand may refine)
changes; building them is one ``np.unique`` over the vocabulary. Token ids beyond the
vocabulary the patterns were compiled for (a logits width larger than the tokenizer) form one
more joint class, which only unconstrained rows may draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class JointClasses:
    """The joint classes of some patterns over a logits width ``width``."""

    key: tuple
    #: int64[width] on the device: the joint class of every token id.
    joint_of_token: torch.Tensor
    #: Per pattern (in the order given): int64[J], its own class of each joint class.
    own: tuple[np.ndarray, ...]
    #: bool[J]: joint classes made of end-of-sequence tokens.
    is_eos: np.ndarray
    #: The joint class of ids beyond the patterns' vocabulary, or -1 when there are none.
    beyond: int

    @property
    def num_classes(self) -> int:
        return int(self.is_eos.shape[0])


def build_joint(
    class_ofs: list[np.ndarray], eos_ids, width: int, device, key: tuple = ()
) -> JointClasses:
    """Joint classes of the patterns whose ``class_of`` arrays (``int32[V]`` each) are given,
    separating ``eos_ids``, for logits ``width`` wide, with the token map on ``device``."""
    vocab = int(class_ofs[0].shape[0]) if class_ofs else width
    eos = np.zeros(vocab, dtype=np.int64)
    eos_list = [e for e in eos_ids if 0 <= e < vocab]
    eos[eos_list] = 1
    code = eos
    first = None
    for class_of in class_ofs:
        # Combine pairwise: the codes stay below V * C, whatever the number of patterns.
        code = code * (int(class_of.max()) + 1) + class_of.astype(np.int64)
        _, first, code = np.unique(code, return_index=True, return_inverse=True)
        code = code.reshape(-1)
    if first is None:
        _, first, code = np.unique(code, return_index=True, return_inverse=True)
        code = code.reshape(-1)
    num = int(first.shape[0])
    own = tuple(class_of[first].astype(np.int64) for class_of in class_ofs)
    is_eos = eos[first].astype(bool)
    beyond = -1
    if width > vocab:
        beyond = num
        code = np.concatenate([code, np.full(width - vocab, num, dtype=np.int64)])
        own = tuple(np.concatenate([o, [0]]) for o in own)  # class 0: never allowed
        is_eos = np.concatenate([is_eos, [False]])
    joint_of_token = torch.from_numpy(np.ascontiguousarray(code[:width])).to(device)  # [width]
    return JointClasses(key, joint_of_token, own, is_eos, beyond)


def token_mask(forbid: np.ndarray, joint: JointClasses, logits: torch.Tensor) -> torch.Tensor:
    """What :func:`apply_mask` writes with, for ``forbid[b, joint_of_token[t]]`` (one gather):
    ``bool[B, V]`` on an accelerator; on the CPU a ``[B, V]`` bias of 0 and -inf in the logits'
    dtype, because there adding it is an order of magnitude faster than ``masked_fill_``."""
    forbid_dev = torch.from_numpy(forbid).to(logits.device, non_blocking=True)  # [B, J]
    if logits.device.type == "cpu":
        bias = torch.zeros(forbid.shape, dtype=logits.dtype).masked_fill_(forbid_dev, -math.inf)
        return bias.index_select(1, joint.joint_of_token.cpu())  # [B, V] float
    return forbid_dev.index_select(1, joint.joint_of_token)  # [B, V] bool


def apply_mask(logits: torch.Tensor, mask: torch.Tensor) -> None:
    """``logits[b, t] = -inf`` where the mask forbids ``t`` (in place)."""
    if mask.dtype == torch.bool:
        logits.masked_fill_(mask, -math.inf)
    else:
        logits.add_(mask)  # -inf + a finite logit is -inf; allowed tokens get + 0
