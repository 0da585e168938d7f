"""One step's mask for a vLLM batch: per-row class decisions -> one masked write on the logits.

:class:`BatchMasker` takes the constrained rows of a step (their logits row, their
:class:`~regexlm.vllm.rows.RowState`), groups them by pattern, asks each pattern which classes
its rows may draw (:func:`~regexlm.vllm.rows.keep_classes`, vectorised over the group's rows),
translates that to the batch's joint classes (:mod:`regexlm.vllm.joint`, rebuilt only when the
batch's patterns change) and writes ``-inf`` over every forbidden logit at once. Rows that are
*done* (matched with ``stop_after_match``, or cannot go on) may draw only end-of-sequence; a
row left with nothing allowed becomes done, so vLLM never samples from a row of ``-inf``.

On an accelerator the write is one gather of a ``[B, V]`` mask and one ``masked_fill_``. On the
CPU, where both are slow next to an add, each distinct row decision is turned once into a ``[V]``
bias of 0 and -inf (kept in a small cache bounded by bytes: rows of one pattern in one state
share it). The masker keeps a ``[B, V]`` bias matrix between steps, one row per batch slot, and
copies a cached bias into a slot's row only when that slot's decision changed; a step then costs
one add over the constrained rows' span (one vectorised, multi-threaded op instead of one small
op per row, whose fixed costs dominate at a vocabulary's width).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict

import numpy as np
import torch

from regexlm.vllm.joint import JointClasses, apply_mask, build_joint, token_mask
from regexlm.vllm.rows import RowState, keep_classes

logger = logging.getLogger("regexlm.vllm")

ROW_BIAS_BYTES = 64 << 20  # CPU row biases kept between steps
SLOT_BIAS_BYTES = 64 << 20  # the slot bias matrix; a wider batch adds row by row


class BatchMasker:
    """Masks the logits of constrained rows; keeps the joint classes between steps."""

    def __init__(self, eos_ids) -> None:
        self.eos_ids = sorted({int(e) for e in eos_ids})
        self._joint: JointClasses | None = None
        self._held: tuple = ()  # the patterns the joint classes were built for (keeps ids valid)
        self.joint_builds = 0
        # The last step's decisions and the token mask made from them.
        self._last: tuple[tuple, np.ndarray, torch.Tensor] | None = None
        self.gathers = 0
        #: Per-row cached biases (True), one batched gather and masked fill (False), or by the
        #: logits' device: biases on the CPU (None).
        self.row_biases: bool | None = None
        # row decision (bytes) -> bias [V], for the current joint classes.
        self._row_bias: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._row_bias_key: tuple | None = None
        # The bias matrix [slots, V] and the decision each of its rows holds (None: zeros).
        self._slot_bias: torch.Tensor | None = None
        self._slot_code: list[bytes | None] = []
        #: Largest slot bias matrix (bytes); a wider batch adds its rows' biases one by one.
        self.slot_bias_bytes = SLOT_BIAS_BYTES

    def joint_for(self, patterns: list, width: int, device) -> JointClasses:
        class_ofs = [p.class_of() for p in patterns]
        key = (width, str(device), tuple((id(p), p.class_stamp) for p in patterns))
        if self._joint is None or self._joint.key != key:
            self._joint = build_joint(class_ofs, self.eos_ids, width, device, key)
            self._held = tuple(patterns)
            self.joint_builds += 1
        return self._joint

    def apply(self, logits: torch.Tensor, rows: list[tuple[int, RowState]]) -> torch.Tensor:
        """Mask ``logits`` (``[B, V]``, in place) for ``rows``: (logits row, state) pairs."""
        if not rows:
            return logits
        batch, width = logits.shape
        groups: dict[int, tuple[object, list[tuple[int, RowState]]]] = {}
        for position, row in rows:
            if not row.done:
                groups.setdefault(id(row.pattern), (row.pattern, []))[1].append((position, row))
        patterns, work = [], []
        for pattern, members in groups.values():
            n = len(members)
            states = np.fromiter((r.state for _, r in members), dtype=np.int64, count=n)
            # Rows first: building them may refine the pattern's classes.
            pattern.index.ensure_rows(states)
            patterns.append(pattern)
            work.append((pattern, members, states))
        joint = self.joint_for(patterns, width, logits.device)
        forbid = np.zeros((batch, joint.num_classes), dtype=bool)  # [B, J]
        for k, (pattern, members, states) in enumerate(work):
            n = len(members)
            positions = np.fromiter((p for p, _ in members), dtype=np.int64, count=n)
            remaining = np.fromiter((r.remaining() for _, r in members), dtype=np.int64, count=n)
            keep = keep_classes(pattern, states, remaining)[:, joint.own[k]]  # [b, J]
            if joint.beyond >= 0:
                keep[:, joint.beyond] = False
            stuck = ~keep.any(axis=1)
            for i in np.flatnonzero(stuck).tolist():
                row = members[i][1]
                logger.warning(
                    "no token is allowed at state %d of %r; ending the request",
                    row.state,
                    pattern.index.patterns,
                )
                row.done, row.reason = True, "no token allowed"
            forbid[positions] = ~keep
        finishing = [position for position, row in rows if row.done]
        if finishing:
            forbid[finishing] = ~joint.is_eos
        row_biases = self.row_biases
        if row_biases is None:
            row_biases = logits.device.type == "cpu"
        if row_biases:
            self._add_row_biases(logits, forbid, joint)
            return logits
        last = self._last
        if (
            last is not None
            and last[0] == joint.key
            and last[1].shape == forbid.shape
            and np.array_equal(last[1], forbid)
            and last[2].device == logits.device
            and last[2].dtype in (torch.bool, logits.dtype)
        ):
            mask = last[2]
        else:
            mask = token_mask(forbid, joint, logits)  # [B, V]
            self._last = (joint.key, forbid, mask)
            self.gathers += 1
        apply_mask(logits, mask)
        return logits

    def _add_row_biases(self, logits: torch.Tensor, forbid: np.ndarray, joint) -> None:
        """CPU: add each constrained row's ``[V]`` bias of 0 / -inf to its logits, through the
        slot bias matrix (rows rewritten only where a slot's decision changed), in one add."""
        key = (joint.key, logits.dtype, logits.shape[1])
        if self._row_bias_key != key:
            self._row_bias.clear()
            self._row_bias_key = key
            self._slot_bias = None
        batch, width = logits.shape
        constrained = np.flatnonzero(forbid.any(axis=1))
        if constrained.size == 0:
            return
        if batch * width * logits.element_size() > self.slot_bias_bytes:
            for position in constrained.tolist():
                logits[position].add_(self._bias(forbid[position], joint, logits))
            return
        if (
            self._slot_bias is None
            or self._slot_bias.shape[0] < batch
            or self._slot_bias.device != logits.device
        ):
            self._slot_bias = logits.new_zeros(batch, width)  # [slots, V]
            self._slot_code = [None] * batch
        lo, hi = int(constrained[0]), int(constrained[-1]) + 1
        matrix, codes = self._slot_bias, self._slot_code
        for position in range(lo, hi):
            decision = forbid[position]
            code = decision.tobytes() if decision.any() else None
            if code == codes[position]:
                continue
            codes[position] = code
            if code is None:
                matrix[position].zero_()
            else:
                matrix[position].copy_(self._bias(decision, joint, logits))
        logits[lo:hi].add_(matrix[lo:hi])  # -inf + a finite logit is -inf; allowed: + 0

    def _bias(self, decision: np.ndarray, joint, logits: torch.Tensor) -> torch.Tensor:
        """The ``[V]`` bias of one row decision (``bool[J]``, True: forbidden), cached."""
        code = decision.tobytes()
        bias = self._row_bias.get(code)
        if bias is not None:
            self._row_bias.move_to_end(code)
            return bias
        per_class = torch.zeros(decision.shape[0], dtype=logits.dtype)  # [J]
        per_class[torch.from_numpy(decision)] = -math.inf
        bias = per_class.to(logits.device).index_select(0, joint.joint_of_token)  # [V]
        self._row_bias[code] = bias
        self.gathers += 1
        capacity = max(8, ROW_BIAS_BYTES // (logits.shape[1] * logits.element_size()))
        while len(self._row_bias) > capacity:
            self._row_bias.popitem(last=False)
        return bias
