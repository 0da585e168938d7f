"""The whole decode step as one Triton kernel: mask, budget, penalty, temperature, top-k, top-p,
Gumbel draw and automaton advance, one launch for the batch, no host synchronisation.

A row is streamed in tiles and never sorted. The grid is (B, chunks): pass A, the pass every row
needs, is split into chunks of the row when the batch is small (by default enough programs to
fill the GPU twice). Each chunk program writes its partial statistics, then takes a ticket from a
per-row arrival counter (an atomic add); the program that arrives last combines the partials and
carries on alone with the rest of the row (winner check, searches, final draw), then resets the
counter. No program waits for another, so this needs no grid barrier and also runs in Triton's
interpreter. The later passes stay with one program per row: each needs the row's global counts
before the next pivot choice, which only a grid-wide barrier could share across programs.

Pass A (always) builds the processed logits tile by tile: the allowed test through ``class_of``,
the state's row (``row_of``) of ``next_by_class`` and ``min_tokens`` (the budget), the penalty
from ``seen``, NaN read as -inf, and ``z = x / T``. It keeps running statistics: the allowed
count, min and max of ``z``, the greedy token (argmax of the penalised logit ``x``, lowest id),
the softmax normaliser ``sum exp(z - max)`` and the Gumbel winner ``argmax z - log(-log u)``
over all allowed tokens. Greedy rows, degenerate rows (no finite maximum of ``z``: they take the
greedy token, see `regexlm.ops.reference`) and rows without top-k or top-p are done after this
pass.

Truncation keeps ``{t : z[t] >= tau}``; tau is found by a threshold search instead of a sort.
Floats are mapped to int32 keys that order like the floats (``bits ^ ((bits >> 31) & 0x7fffffff)``)
and the search brackets the answer between two keys. Each further pass over the row tests
``NPIV`` pivot keys at once (a ``[tile, NPIV]`` comparison), so the bracket shrinks by a factor of
``NPIV + 1`` per pass: at most 8 passes for a 32-bit range with 16 pivots, fewer because the search
starts from ``[key(min z), key(max z)]``.

- top-k: the largest key K with ``count(key >= K) >= k`` is exactly the k-th largest value, so
  ``z >= tau_k`` keeps ties at the boundary. The same pass sums ``exp(z - max)`` above each pivot,
  which gives the top-k set's normaliser for top-p without another pass.
- top-p: the largest key K with ``mass(tau_k <= z < K) <= (1 - top_p) * mass(z >= tau_k)``: tokens
  below it are exactly those transformers' warper removes (cumulative mass in ascending order at
  most ``1 - top_p``), ties with the last kept token kept. It is at most ``key(max z)``, so the
  largest token always stays.

The draw is the Gumbel winner over the kept set. When the pass-A winner is already kept (it wins
over a superset, so it wins over the kept set) no further pass is needed; otherwise one last pass
takes the argmax over the kept tokens. With top-k alone or top-p alone, one cheap pass (a single
comparison per token) tests the winner first, so such rows usually take two passes in all; the
winner's key is also always one of the search pivots, so a search stops as soon as it is known.
Sums are taken in a different order than the reference's sort and cumulative sum, so a kept set
can differ from the reference's only when a token's cumulative mass lies within float rounding of
the top-p boundary.

Noise: an explicit ``noise`` tensor gives the reference's tokens exactly; otherwise the
counter-based generator of `regexlm.ops.noise` (32-bit integer ops, keyed by the row's seed and
step, counted by the token id), the same numbers the reference and the CUDA kernel compute.

Every load is masked to its table's bounds: states outside ``[0, S)``, rows outside ``[0, R)``,
classes outside ``[0, C)`` and next states outside ``[-1, S)`` read as "not allowed", never as an
address.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from regexlm.ops.grid import arrival_counters, sm_count
from regexlm.ops.types import StepResult, state_rows

NPIV = 16  # pivot keys tested per search pass


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _float_key(z):
    """fp32 -> int32 with the same order (no NaNs); -0.0 and +0.0 share a key, as they compare
    equal."""
    bits = tl.where(z == 0, 0, z.to(tl.int32, bitcast=True))
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


@triton.jit
def _mix32(x):
    """The 32-bit mixing bijection of `regexlm.ops.noise` (uint32 in, uint32 out)."""
    x = x ^ (x >> 16)
    x = x * 0x21F0AAAD
    x = x ^ (x >> 15)
    x = x * 0x735A2D97
    return x ^ (x >> 15)


@triton.jit
def _row_key(seeds_ptr, steps_ptr, b):
    """(k0, k1) uint32 of row b, from its int64 seed and int32 step."""
    seed = tl.load(seeds_ptr + b)
    lo = seed.to(tl.uint32)  # low word (truncation)
    hi = (seed >> 32).to(tl.uint32)
    st = tl.load(steps_ptr + b).to(tl.uint32, bitcast=True)
    k0 = _mix32(lo ^ _mix32(st ^ 0x9E3779B9))
    k1 = _mix32(hi ^ _mix32(k0 ^ 0x85EBCA6B))
    return k0, k1


@triton.jit
def _tile(
    b,
    row,
    s_ok,
    offs,
    V,
    S,
    C,
    logits_ptr,
    stride_l,
    seen_ptr,
    stride_s,
    class_ptr,
    nbc_ptr,
    stride_n,
    mintok_ptr,
    R,
    budget_on,
    pen,
    t_eff,
    HAS_SEEN: tl.constexpr,
):
    """One tile: (x penalised logits, z = x / T, allowed mask); x and z are -inf where not
    allowed, and a NaN reads as -inf."""
    valid = offs < V
    cls = tl.load(class_ptr + offs, mask=valid, other=-1)
    row_ok = (tl.full(offs.shape, 0, tl.int32) + s_ok) != 0
    cls_ok = valid & row_ok & (cls >= 0) & (cls < C)
    nxt = tl.load(nbc_ptr + row * stride_n + cls, mask=cls_ok, other=-1)
    ok = cls_ok & (nxt >= 0) & (nxt < S)
    # budget: keep t only if min_tokens[next(s, t)] < R (when the row's budget applies)
    on = (tl.full(offs.shape, 0, tl.int32) + budget_on) != 0
    mt = tl.load(mintok_ptr + nxt, mask=ok & on, other=0)
    ok = ok & ((~on) | (mt < R))
    x = tl.load(logits_ptr + b * stride_l + offs, mask=ok, other=0.0).to(tl.float32)
    if HAS_SEEN:
        hit = tl.load(seen_ptr + b * stride_s + offs, mask=ok, other=0) != 0
        x = tl.where(hit, tl.where(x < 0, x * pen, tl.div_rn(x, pen)), x)
    x = tl.where(ok & (x == x), x, -float("inf"))
    z = tl.where(ok, tl.div_rn(x, t_eff), -float("inf"))
    return x, z, ok


@triton.jit
def _gumbel(z, ok, b, offs, noise_ptr, stride_nz, k0, k1, HAS_NOISE: tl.constexpr, sampling):
    """z - log(-log u) on allowed tokens, -inf elsewhere."""
    if HAS_NOISE:
        on = (tl.full(offs.shape, 0, tl.int32) + sampling) != 0
        u = tl.load(noise_ptr + b * stride_nz + offs, mask=ok & on, other=0.5)
        u = tl.where(u == u, u, 0.5)  # NaN reads as 0.5
        u = tl.where(u < 1.1754943508222875e-38, 1.1754943508222875e-38, u)
        u = tl.where(u > 0.99999994039535522, 0.99999994039535522, u)
    else:
        h = _mix32((offs.to(tl.uint32) ^ k0) * 0x61C88647 + k1)
        u = ((h >> 8) | 1).to(tl.float32) * 5.9604644775390625e-08  # odd multiple of 2^-24
    g = z - tl.log(-tl.log(u))
    return tl.where(ok, g, -float("inf"))


@triton.jit
def _sample_step_kernel(
    logits_ptr,
    stride_l,
    states_ptr,
    budgets_ptr,
    temp_ptr,
    topk_ptr,
    topp_ptr,
    pen_ptr,
    seen_ptr,
    stride_s,
    nbc_ptr,
    stride_n,
    rowof_ptr,
    class_ptr,
    mintok_ptr,
    noise_ptr,
    stride_nz,
    seeds_ptr,
    steps_ptr,
    tokens_ptr,
    next_ptr,
    noallowed_ptr,
    V,
    S,
    NR,
    C,
    part_f_ptr,
    part_i_ptr,
    counter_ptr,
    CHUNK,
    NSPLIT,
    HAS_SEEN: tl.constexpr,
    HAS_NOISE: tl.constexpr,
    BLOCK: tl.constexpr,
    PBLOCK: tl.constexpr,
    NP: tl.constexpr,
    SPLIT_P2: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1).to(tl.int64)  # chunk of the row for pass A
    BIG: tl.constexpr = 0x7FFFFFFF
    NEG_INF: tl.constexpr = -float("inf")
    s_in = tl.load(states_ptr + b)
    s_ok = tl.where((s_in >= 0) & (s_in < S), 1, 0)
    s = tl.where(s_ok != 0, s_in, 0).to(tl.int64)  # an address even when the state is invalid
    row = tl.load(rowof_ptr + s, mask=s_ok != 0, other=-1)  # the state's row of next_by_class
    s_ok = tl.where((s_ok != 0) & (row >= 0) & (row < NR), 1, 0)
    row = tl.where(s_ok != 0, row, 0).to(tl.int64)
    R = tl.load(budgets_ptr + b)
    temp = tl.load(temp_ptr + b)
    k = tl.load(topk_ptr + b)
    p = tl.load(topp_ptr + b)
    pen = tl.load(pen_ptr + b)
    sampling = tl.where(temp > 0, 1, 0)  # a NaN temperature is not > 0: greedy
    t_eff = tl.where(
        sampling != 0, tl.where(temp > 3.4028234663852886e38, 3.4028234663852886e38, temp), 1.0
    )
    mt_s = tl.load(mintok_ptr + s, mask=s_ok != 0, other=BIG)
    budget_on = tl.where((s_ok != 0) & (R >= 0) & (mt_s <= R), 1, 0)
    if HAS_NOISE:
        k0 = tl.full((), 0, tl.uint32)
        k1 = tl.full((), 0, tl.uint32)
    else:
        k0, k1 = _row_key(seeds_ptr, steps_ptr, b)

    # ---- pass A: statistics over the allowed tokens --------------------------------------
    m = tl.full((), NEG_INF, tl.float32)  # max z
    xmax = tl.full((), NEG_INF, tl.float32)  # max x
    arg = tl.full((), BIG, tl.int32)  # greedy token: argmax x, lowest id
    zmin = tl.full((), float("inf"), tl.float32)
    n = tl.full((), 0, tl.int32)  # allowed count
    total = tl.full((), 0.0, tl.float32)  # sum exp(z - m), rescaled online
    gbest = tl.full((), NEG_INF, tl.float32)  # Gumbel winner
    gidx = tl.full((), BIG, tl.int32)
    gz = tl.full((), NEG_INF, tl.float32)  # z of the Gumbel winner
    lane = tl.arange(0, BLOCK)
    c32 = tl.program_id(1)  # int32 loop bounds keep token ids int32
    for start in range(c32 * CHUNK, tl.minimum(c32 * CHUNK + CHUNK, V), BLOCK):
        offs = start + lane
        x, z, ok = _tile(
            b,
            row,
            s_ok,
            offs,
            V,
            S,
            C,
            logits_ptr,
            stride_l,
            seen_ptr,
            stride_s,
            class_ptr,
            nbc_ptr,
            stride_n,
            mintok_ptr,
            R,
            budget_on,
            pen,
            t_eff,
            HAS_SEEN,
        )
        txmax = tl.max(x, 0)
        targ = tl.min(tl.where(ok & (x == txmax), offs, BIG), 0)
        arg = tl.where((txmax > xmax) | ((arg == BIG) & (targ != BIG)), targ, arg)
        xmax = tl.maximum(xmax, txmax)
        tmax = tl.max(z, 0)
        m_new = tl.maximum(m, tmax)
        m_fin = (m_new > NEG_INF) & (m_new < float("inf"))
        m_safe = tl.where(m_fin, m_new, 0.0)  # no NaN on empty or infinite rows
        scale = tl.where(m == m_new, 1.0, tl.exp(m - m_safe))
        total = total * scale + tl.sum(tl.where(ok, tl.exp(z - m_safe), 0.0), 0)
        m = m_new
        n += tl.sum(ok.to(tl.int32), 0)
        zmin = tl.minimum(zmin, tl.min(tl.where(ok, z, float("inf")), 0))
        g = _gumbel(z, ok, b, offs, noise_ptr, stride_nz, k0, k1, HAS_NOISE, sampling)
        tg = tl.max(g, 0)
        tgi = tl.min(tl.where(ok & (g == tg), offs, BIG), 0)
        better = (tg > gbest) | ((gidx == BIG) & (tgi != BIG))
        gz = tl.where(better, tl.sum(tl.where(offs == tgi, z, 0.0), 0), gz)
        gidx = tl.where(better, tgi, gidx)
        gbest = tl.where(better, tg, gbest)

    # ---- split rows: every chunk leaves its statistics; the last one to finish goes on -------
    last = tl.full((), 1, tl.int32)
    if SPLIT_P2 > 1:
        slot = (b * NSPLIT + c) * 8
        tl.store(part_f_ptr + slot + 0, m)
        tl.store(part_f_ptr + slot + 1, zmin)
        tl.store(part_f_ptr + slot + 2, total)
        tl.store(part_f_ptr + slot + 3, gbest)
        tl.store(part_f_ptr + slot + 4, gz)
        tl.store(part_f_ptr + slot + 5, xmax)
        tl.store(part_i_ptr + slot + 0, arg)
        tl.store(part_i_ptr + slot + 1, n)
        tl.store(part_i_ptr + slot + 2, gidx)
        tl.debug_barrier()  # every thread's partial stores precede the ticket
        done = tl.atomic_add(counter_ptr + b, 1)  # acq_rel: the stores above are visible
        tl.debug_barrier()
        last = tl.where(done == NSPLIT - 1, 1, 0)
        cs = tl.arange(0, SPLIT_P2).to(tl.int64)
        cm = (cs < NSPLIT) & ((tl.zeros_like(cs) + last) != 0)
        slots = (b * NSPLIT + cs) * 8
        mc = tl.load(part_f_ptr + slots + 0, mask=cm, other=NEG_INF, volatile=True)
        zc = tl.load(part_f_ptr + slots + 1, mask=cm, other=float("inf"), volatile=True)
        tc = tl.load(part_f_ptr + slots + 2, mask=cm, other=0.0, volatile=True)
        gc = tl.load(part_f_ptr + slots + 3, mask=cm, other=NEG_INF, volatile=True)
        gzc = tl.load(part_f_ptr + slots + 4, mask=cm, other=NEG_INF, volatile=True)
        xc = tl.load(part_f_ptr + slots + 5, mask=cm, other=NEG_INF, volatile=True)
        ac = tl.load(part_i_ptr + slots + 0, mask=cm, other=BIG, volatile=True)
        nc = tl.load(part_i_ptr + slots + 1, mask=cm, other=0, volatile=True)
        ic = tl.load(part_i_ptr + slots + 2, mask=cm, other=BIG, volatile=True)
        xmax = tl.max(xc, 0)
        arg = tl.min(tl.where((xc == xmax) & (ac != BIG), ac, BIG), 0)
        m = tl.max(mc, 0)
        m_safe = tl.where((m > NEG_INF) & (m < float("inf")), m, 0.0)
        total = tl.sum(tl.where(mc > NEG_INF, tc * tl.exp(mc - m_safe), 0.0), 0)
        zmin = tl.min(zc, 0)
        n = tl.sum(nc, 0)
        gbest = tl.max(gc, 0)
        gidx = tl.min(tl.where((gc == gbest) & (ic != BIG), ic, BIG), 0)
        gz = tl.max(tl.where((ic == gidx) & (ic != BIG), gzc, NEG_INF), 0)
        tl.store(counter_ptr + b, 0, mask=last != 0)  # ready for the next launch

    # ---- degenerate rows (no finite maximum of z) take the greedy token -----------------------
    finite = (m > NEG_INF) & (m < float("inf"))
    draw = (sampling != 0) & finite

    # ---- threshold searches (only rows that truncate run any pass) ------------------------
    need_k = (last != 0) & draw & (k > 0) & (k < n)
    need_p = (last != 0) & draw & (p < 1.0) & (n > 1)
    key_lo = _float_key(zmin).to(tl.int64)
    key_hi = _float_key(m).to(tl.int64) + 1
    j = tl.arange(0, NP).to(tl.int64)
    plane = tl.arange(0, PBLOCK)

    # ---- winner check: with a single criterion, one comparison per token usually decides ----
    # top-k alone keeps the winner iff count(z > z_w) < k; top-p alone iff
    # mass(z <= z_w) > (1 - p) * total (the search predicate below, at the winner's key).
    nk = need_k.to(tl.int32)
    npp = need_p.to(tl.int32)
    key_w = _float_key(gz).to(tl.int64)
    cnt_gt = tl.full((), 0, tl.int32)
    mass_le = tl.full((), 0.0, tl.float32)
    stop = tl.where(nk + npp == 1, V, 0)
    for start in range(0, stop, BLOCK):
        offs = start + lane
        x, z, ok = _tile(
            b,
            row,
            s_ok,
            offs,
            V,
            S,
            C,
            logits_ptr,
            stride_l,
            seen_ptr,
            stride_s,
            class_ptr,
            nbc_ptr,
            stride_n,
            mintok_ptr,
            R,
            budget_on,
            pen,
            t_eff,
            HAS_SEEN,
        )
        key = _float_key(z).to(tl.int64)
        cnt_gt += tl.sum((ok & (key > key_w)).to(tl.int32), 0)
        mass_le += tl.sum(tl.where(ok & (key <= key_w), tl.exp(z - m), 0.0), 0)
    kept_k = (nk == 1) & (npp == 0) & (cnt_gt < k)
    kept_p = (npp == 1) & (nk == 0) & (mass_le > (1.0 - p) * total)
    decided = kept_k | kept_p
    need_k = need_k & (decided == 0)
    need_p = need_p & (decided == 0)

    # top-k: largest key K with count(key >= K) >= k; also the mass at or above it
    lo = key_lo
    hi = tl.where(need_k, key_hi, key_lo + 1)
    lo_mass = total
    wkey = key_w + 1  # pivot that decides whether the winner is kept
    # without top-p, stop once the winner is known to be kept (tau_k <= key(winner))
    stop_k = tl.where(need_p, -(2**62), wkey)
    while (hi - lo > 1) & (hi > stop_k):
        piv = lo + ((hi - lo) * (j + 1)) // (NP + 1)  # [NP], increasing
        piv = tl.where((j == NP - 1) & (wkey > lo) & (wkey < hi), wkey, piv)
        cnt = tl.zeros((NP,), tl.int32)
        mass = tl.zeros((NP,), tl.float32)
        for start in range(0, V, PBLOCK):
            offs = start + plane
            x, z, ok = _tile(
                b,
                row,
                s_ok,
                offs,
                V,
                S,
                C,
                logits_ptr,
                stride_l,
                seen_ptr,
                stride_s,
                class_ptr,
                nbc_ptr,
                stride_n,
                mintok_ptr,
                R,
                budget_on,
                pen,
                t_eff,
                HAS_SEEN,
            )
            key = _float_key(z).to(tl.int64)
            e = tl.where(ok, tl.exp(z - m), 0.0)
            above = ok[:, None] & (key[:, None] >= piv[None, :])  # [PBLOCK, NP]
            cnt += tl.sum(above.to(tl.int32), 0)
            mass += tl.sum(tl.where(above, e[:, None], 0.0), 0)
        pred = cnt >= k
        new_lo = tl.max(tl.where(pred, piv, lo), 0)
        at_lo = tl.max(tl.where(pred & (piv == new_lo), mass, -1.0), 0)
        lo_mass = tl.where(new_lo > lo, at_lo, lo_mass)
        hi = tl.min(tl.where(pred, hi, piv), 0)
        lo = new_lo
    key_k = lo

    # top-p: largest key K with mass(key_k <= key < K) <= (1 - p) * mass(key >= key_k)
    budget_mass = (1.0 - p) * lo_mass
    lo = key_k
    hi = tl.where(need_p, key_hi, key_k + 1)
    while (hi - lo > 1) & (hi > wkey):  # stop once the winner is known to be kept
        piv = lo + ((hi - lo) * (j + 1)) // (NP + 1)
        piv = tl.where((j == NP - 1) & (wkey > lo) & (wkey < hi), wkey, piv)
        below = tl.zeros((NP,), tl.float32)
        for start in range(0, V, PBLOCK):
            offs = start + plane
            x, z, ok = _tile(
                b,
                row,
                s_ok,
                offs,
                V,
                S,
                C,
                logits_ptr,
                stride_l,
                seen_ptr,
                stride_s,
                class_ptr,
                nbc_ptr,
                stride_n,
                mintok_ptr,
                R,
                budget_on,
                pen,
                t_eff,
                HAS_SEEN,
            )
            key = _float_key(z).to(tl.int64)
            e = tl.where(ok & (key >= key_k), tl.exp(z - m), 0.0)
            inside = key[:, None] < piv[None, :]  # [PBLOCK, NP]
            below += tl.sum(tl.where(inside, e[:, None], 0.0), 0)
        pred = below <= budget_mass
        new_lo = tl.max(tl.where(pred, piv, lo), 0)
        hi = tl.min(tl.where(pred, hi, piv), 0)
        lo = new_lo
    key_tau = lo

    # ---- draw: the pass-A winner if it is kept, else the argmax over the kept set ----------
    redo = (need_k | need_p) & (_float_key(gz).to(tl.int64) < key_tau)
    stop = tl.where(redo, V, 0)
    gbest = tl.where(redo, NEG_INF, gbest)  # the argmax restarts over the kept set
    gidx = tl.where(redo, BIG, gidx)
    for start in range(0, stop, BLOCK):
        offs = start + lane
        x, z, ok = _tile(
            b,
            row,
            s_ok,
            offs,
            V,
            S,
            C,
            logits_ptr,
            stride_l,
            seen_ptr,
            stride_s,
            class_ptr,
            nbc_ptr,
            stride_n,
            mintok_ptr,
            R,
            budget_on,
            pen,
            t_eff,
            HAS_SEEN,
        )
        kept = ok & (_float_key(z).to(tl.int64) >= key_tau)
        g = _gumbel(z, kept, b, offs, noise_ptr, stride_nz, k0, k1, HAS_NOISE, sampling)
        tg = tl.max(g, 0)
        tgi = tl.min(tl.where(kept & (g == tg), offs, BIG), 0)
        better = (tgi != BIG) & ((tg > gbest) | (gidx == BIG))
        gidx = tl.where(better, tgi, gidx)
        gbest = tl.where(better, tg, gbest)

    token = tl.where(draw & (gidx != BIG), gidx, arg)  # arg is allowed whenever n > 0
    some = n > 0
    token = tl.where(some, token, -1)
    safe = tl.where(some, token, 0)
    cls = tl.load(class_ptr + safe, mask=some, other=0)
    nxt = tl.load(nbc_ptr + row * stride_n + cls, mask=some, other=0)
    tl.store(tokens_ptr + b, token.to(tl.int64), mask=last != 0)
    tl.store(next_ptr + b, tl.where(some, nxt, s_in), mask=last != 0)
    tl.store(noallowed_ptr + b, tl.where(some, 0, 1).to(tl.int8), mask=last != 0)


def launch_config(
    B: int,
    V: int,
    sm_count: int,
    *,
    block: int | None = None,
    num_warps: int | None = None,
    split: int | None = None,
    interpreting: bool = False,
) -> dict:
    """Tile sizes, warps and the row split of one launch (``sm_count`` 0: not on a GPU).

    BLOCK is 4096 for a real vocabulary (num_warps 8), PBLOCK 256; ``split`` chunks per row
    default to enough programs to fill the GPU twice; SPLIT_P2 is 1 for one program per row,
    else a power of two >= nsplit, at least 64, so every split launch over up to 64 tiles
    (262,144 tokens) is one compiled variant.
    """
    if block is None:
        # the interpreter runs one numpy op at a time: fewer, larger tiles are faster
        block = min(8192 if interpreting else 4096, triton.next_power_of_2(V))
    pblock = block if interpreting else min(256, block)
    if num_warps is None:
        num_warps = 8 if block >= 2048 else 4
    if split is None:
        split = max(1, (2 * sm_count) // B) if sm_count else 1
    chunk = triton.cdiv(triton.cdiv(V, min(split, triton.cdiv(V, block))), block) * block
    nsplit = triton.cdiv(V, chunk)
    split_p2 = 1 if nsplit <= 1 else max(64, triton.next_power_of_2(nsplit))
    return dict(
        block=block,
        pblock=pblock,
        num_warps=num_warps,
        chunk=chunk,
        nsplit=nsplit,
        split_p2=split_p2,
    )


def sample_step_triton(
    logits,
    states,
    budgets,
    temperature,
    top_k,
    top_p,
    repetition_penalty,
    seen,
    tables,
    *,
    noise=None,
    seeds=None,
    steps=None,
    block=None,
    num_warps=None,
    split=None,
) -> StepResult:
    """Launch the fused step for the batch; see the module docstring. Arguments as `sample_step`
    (``seeds`` int64[B] and ``steps`` int32[B], zeros when omitted, unless ``noise`` is given).

    ``split`` (chunks per row for pass A) defaults to enough programs to fill the GPU twice.
    """
    B, V = logits.shape
    dev = logits.device
    NR, C = tables.next_by_class.shape
    S = tables.min_tokens.shape[0]
    if B * V * S * NR * C == 0:  # nothing to launch: no row has an allowed token
        return StepResult(
            torch.full((B,), -1, dtype=torch.int64, device=dev),
            states.to(torch.int32).clone(),
            torch.ones(B, dtype=torch.bool, device=dev),
        )
    logits = logits.contiguous()
    tokens = torch.empty(B, dtype=torch.int64, device=dev)
    next_states = torch.empty(B, dtype=torch.int32, device=dev)
    no_allowed = torch.empty(B, dtype=torch.int8, device=dev)
    seen_u8 = seen.contiguous().view(torch.uint8) if seen is not None else logits
    noise_t = noise.to(torch.float32).contiguous() if noise is not None else logits
    if noise is None:
        seeds = (
            torch.zeros(B, dtype=torch.int64, device=dev)
            if seeds is None
            else seeds.to(torch.int64).contiguous()
        )
        steps = (
            torch.zeros(B, dtype=torch.int32, device=dev)
            if steps is None
            else steps.to(torch.int32).contiguous()
        )
    else:
        seeds = steps = logits  # unused
    nbc = tables.next_by_class.to(torch.int32).contiguous()
    cfg = launch_config(
        B,
        V,
        sm_count(dev) if dev.type == "cuda" else 0,
        block=block,
        num_warps=num_warps,
        split=split,
        interpreting=_interpreting(),
    )
    chunk, nsplit = cfg["chunk"], cfg["nsplit"]
    if nsplit > 1:
        part_f = torch.empty(B * nsplit * 8, dtype=torch.float32, device=dev)
        part_i = torch.empty(B * nsplit * 8, dtype=torch.int32, device=dev)
        counters = arrival_counters(dev, B)
    else:
        part_f, part_i, counters = logits, logits, logits  # unused
    _sample_step_kernel[(B, nsplit)](
        logits,
        logits.stride(0),
        states.to(torch.int32).contiguous(),
        budgets.to(torch.int32).contiguous(),
        temperature.to(torch.float32).contiguous(),
        top_k.to(torch.int32).contiguous(),
        top_p.to(torch.float32).contiguous(),
        repetition_penalty.to(torch.float32).contiguous(),
        seen_u8,
        V if seen is None else seen_u8.stride(0),
        nbc,
        nbc.stride(0),
        state_rows(tables).to(torch.int32).contiguous(),
        tables.class_of.to(torch.int32).contiguous(),
        tables.min_tokens.to(torch.int32).contiguous(),
        noise_t,
        V if noise is None else noise_t.stride(0),
        seeds,
        steps,
        tokens,
        next_states,
        no_allowed,
        V,
        S,
        NR,
        C,
        part_f,
        part_i,
        counters,
        chunk,
        nsplit,
        HAS_SEEN=seen is not None,
        HAS_NOISE=noise is not None,
        BLOCK=cfg["block"],
        PBLOCK=cfg["pblock"],
        NP=NPIV,
        SPLIT_P2=cfg["split_p2"],
        num_warps=cfg["num_warps"],
        enable_fp_fusion=False,  # no FMA contraction: scores round as the reference's do
    )
    return StepResult(tokens, next_states, no_allowed.bool())
