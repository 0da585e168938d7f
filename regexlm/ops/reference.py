"""The per-step operation in plain torch: the specification, and the CPU production path.

One decode step, for each row b of the batch (s = states[b], R = budgets[b], x = logits[b] in fp32)::

    allowed = {t : bit t of bitmask[s] is set}
    if R >= 0 and min_tokens[s] <= R:                       # a match fits in the budget
        allowed = {t in allowed : min_tokens[next(s, t)] <= R - 1}
    if allowed is empty:
        return token -1, state s, no_allowed = True
    for t in allowed:                                        # repetition penalty
        z[t] = x[t]
        if seen[b, t]: z[t] = z[t] * p if z[t] < 0 else z[t] / p
    if temperature == 0:
        token = min {t in allowed : z[t] == max z}            # greedy, lowest id on ties
    else:
        z = z / temperature
        kept = allowed
        if 0 < top_k:  kept = {t in kept : z[t] >= k-th largest z over kept}
        if top_p < 1:                                         # transformers' top-p, ties kept
            q = softmax(z over kept)
            kept = {t in kept : sum(q[u] for u in kept if z[u] <= z[t]) > 1 - top_p}
            kept = kept or {argmax}                           # always keeps the largest
        token = argmax_{t in kept} (z[t] - log(-log u[b, t]))  # Gumbel-max, lowest id on ties
    return token, next(s, token), False

where ``next(s, t) = next_by_class[s, class_of[t]]``. A negative budget means "no budget": only the
grammar mask applies. The top-p cumulative sum is taken in ascending order of probability, as in
transformers' ``TopPLogitsWarper``; tokens tied with the last kept token are kept too, the same rule
top-k follows. The Gumbel-max draw samples exactly from ``softmax(z)`` restricted to the kept set.

Vectorized over the batch: the bitmask is unpacked with shifts; the budget test is made per class
and then spread to tokens; top-k uses ``torch.topk`` with the batch's largest k; top-p sorts only the
tokens top-k kept (or, without top-k, the allowed ones) with ``torch.topk``; with a seed, noise is
drawn only for the kept tokens, in ascending token order (reproducible for the same seed, step,
batch and device type). When every row samples with a small top-k, a short path works on the
``k + 1`` largest values alone and returns the same tokens (a tie across the k-th value, which
would keep extra tokens, sends the batch down the general path).
"""

from __future__ import annotations

import weakref

import torch

from regexlm.ops.noise import mix_seed
from regexlm.ops.types import StepResult

_SHIFTS_CACHE: dict[torch.device, torch.Tensor] = {}


def _shifts(device: torch.device) -> torch.Tensor:
    s = _SHIFTS_CACHE.get(device)
    if s is None:
        s = _SHIFTS_CACHE[device] = torch.arange(32, dtype=torch.int32, device=device)
    return s


def unpack_bitmask(words: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Bitmask rows int32[B, W] -> bool[B, V]; bit j of word w is token 32w + j."""
    return unpack_bits(words, vocab_size) != 0


def unpack_bits(words: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Bitmask rows int32[B, W] -> int32[B, V] of 0/1."""
    # bits: [B, W, 32]; an arithmetic shift keeps bit 31 correct, as only the low bit is read.
    bits = (words.unsqueeze(-1) >> _shifts(words.device)) & 1
    return bits.view(words.shape[0], -1)[:, :vocab_size]


_LONG_CACHE: dict[int, tuple[weakref.ref, torch.Tensor]] = {}


def _as_long(t: torch.Tensor) -> torch.Tensor:
    """``t.long()``, cached for the last few tensors seen (index tables do not change)."""
    hit = _LONG_CACHE.get(id(t))
    if hit is not None and hit[0]() is t and hit[1].shape == t.shape:
        return hit[1]
    if len(_LONG_CACHE) >= 8:
        _LONG_CACHE.clear()
    out = t.long()
    _LONG_CACHE[id(t)] = (weakref.ref(t), out)
    return out


def _allowed_bits(states: torch.Tensor, budgets: torch.Tensor, tables) -> torch.Tensor:
    """Grammar mask and budget mask together: int32[B, V] of 0/1."""
    V = tables.class_of.shape[0]
    s = states.long()  # [B]
    bits = unpack_bits(tables.bitmask[s], V)  # [B, V]
    R = budgets.to(torch.int32)  # [B]
    active = (R >= 0) & (tables.min_tokens[s] <= R)  # [B]
    if bool(active.any()):
        nxt = tables.next_by_class[s]  # [B, C]
        mt = tables.min_tokens[nxt.clamp(min=0).long()]  # [B, C]
        class_ok = (nxt >= 0) & (mt <= (R - 1).unsqueeze(1))  # [B, C]
        class_ok |= ~active.unsqueeze(1)
        cls = _as_long(tables.class_of).expand(s.shape[0], V)  # [B, V]
        bits = bits & class_ok.to(torch.int32).gather(1, cls)
    return bits


def allowed_mask(states: torch.Tensor, budgets: torch.Tensor, tables) -> torch.Tensor:
    """Grammar mask and budget mask together: bool[B, V]."""
    return _allowed_bits(states, budgets, tables) != 0


def mask_to_neg_inf(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x`` where ``keep`` (0/1 ints or bools) holds, -inf elsewhere, by adding 0 or -inf.

    The bias is made with integer ops: (keep - 1) & 0xff800000 is 0 (0.0) or the bits of -inf;
    on CPU this is several times faster than ``masked_fill`` or ``where``.
    """
    k = keep.to(torch.int32) if keep.dtype != torch.int32 else keep
    return x + ((k - 1) & -8388608).view(torch.float32)


def apply_repetition_penalty(
    x: torch.Tensor, seen: torch.Tensor | None, penalty: torch.Tensor
) -> torch.Tensor:
    """transformers' rule over seen ids: a negative logit times p, any other divided by p.

    Out of place; only the seen entries (few) are computed and written.
    """
    if seen is None:
        return x
    rows, cols = seen.nonzero(as_tuple=True)  # sparse: prompt + generated ids
    v = x[rows, cols]
    p = penalty.to(torch.float32)[rows]
    return x.index_put((rows, cols), torch.where(v < 0, v * p, v / p))


def truncation_mask(
    z: torch.Tensor, allowed: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
) -> torch.Tensor:
    """Tokens kept by top-k then top-p (ties at each boundary kept): bool[B, V].

    ``z`` [B, V] holds temperature-scaled logits, -inf where not allowed.
    """
    B, V = z.shape
    kept = allowed
    n_allowed = allowed.sum(1)  # [B]
    k = top_k.long()  # [B]
    k_rows = (k > 0) & (k < n_allowed)
    if bool(k_rows.any()):
        kmax = int(k[k_rows].max())
        top = torch.topk(z, kmax, dim=1, sorted=True).values  # [B, kmax]
        kth = top.gather(1, (k.clamp(1, kmax) - 1).unsqueeze(1))  # [B, 1]
        kth = torch.where(k_rows.unsqueeze(1), kth, torch.full_like(kth, -torch.inf))
        kept = kept & (z >= kth)
    p = top_p.to(torch.float32)
    p_rows = p < 1.0
    if bool(p_rows.any()):
        zk = mask_to_neg_inf(z, kept)  # [B, V]
        n = int(kept[p_rows].sum(1).max())
        vals = torch.topk(zk, n, dim=1, sorted=True).values  # [B, n], descending
        probs = torch.softmax(vals, dim=1)
        # cumulative mass in ascending order (as transformers' warper), read back descending.
        cum = probs.flip(1).cumsum(1).flip(1)  # [B, n]
        removed = cum <= (1.0 - p).unsqueeze(1)
        removed[:, 0] = False
        n_kept = (~removed).sum(1, keepdim=True)  # [B, 1], removed is a suffix
        cutoff = vals.gather(1, n_kept - 1)  # [B, 1]
        cutoff = torch.where(p_rows.unsqueeze(1), cutoff, torch.full_like(cutoff, -torch.inf))
        kept = kept & (z >= cutoff)
    return kept


def gumbel_argmax(
    z: torch.Tensor, kept: torch.Tensor, noise: torch.Tensor | None, seed: int, step: int
) -> torch.Tensor:
    """``argmax_{kept} z - log(-log u)``, lowest id on ties: int64[B].

    With ``noise`` [B, V], u is read at the kept tokens. Without it, u is drawn for the kept
    tokens only, in row-major order, from a generator seeded by (seed, step).
    """
    rows, cols = kept.nonzero(as_tuple=True)  # kept positions, row-major
    if noise is not None:
        u = noise[rows, cols].to(torch.float32)
    else:
        gen = torch.Generator(device=z.device)
        gen.manual_seed(mix_seed(seed, step))
        u = torch.rand(rows.shape[0], generator=gen, device=z.device, dtype=torch.float32)
        u.clamp_(min=torch.finfo(torch.float32).tiny)
    g = z[rows, cols] - torch.log(-torch.log(u))  # [nnz]
    # per-row argmax over the compact list, lowest id on ties (cols ascend within a row)
    B, V = z.shape
    best = torch.full((B,), -torch.inf, device=z.device).scatter_reduce(0, rows, g, "amax")
    win = g == best[rows]
    first = torch.full((B,), V, dtype=torch.int64, device=z.device)
    return first.scatter_reduce(0, rows[win], cols[win], "amin")


SMALL_K = 256  # rows with 0 < top_k <= SMALL_K take the short path below


def _small_top_k(z, bits, t, top_k, top_p, noise, seed, step):
    """The same tokens as the general path when every row samples with a small top-k.

    Works on the ``k + 1`` largest values only (``torch.topk``), so nothing else touches all V
    tokens. Returns None (use the general path) when a row has no top-k, a large k, k at least
    its allowed count, or a tie across its k-th value. Kept tokens are visited in ascending id
    order, so explicit noise and the seeded draw give exactly the general path's tokens.
    """
    k = top_k.long()  # [B]
    if not bool((k > 0).all()):
        return None
    kmax = int(k.max())
    B, V = z.shape
    if kmax >= SMALL_K or kmax + 1 > V or not bool((k < bits.sum(1)).all()):
        return None
    vals, idx = torch.topk(z, kmax + 1, dim=1)  # [B, kmax + 1], descending
    vt = vals / t.unsqueeze(1)
    kth = vt.gather(1, (k - 1).unsqueeze(1))  # [B, 1]
    if bool((vt.gather(1, k.unsqueeze(1)) == kth).any()):
        return None  # a tie across the k-th value: the general path keeps all tied tokens
    pos = torch.arange(kmax + 1, device=z.device)
    kept = pos < k.unsqueeze(1)  # [B, kmax + 1]
    p = top_p.to(torch.float32)
    p_rows = p < 1.0
    if bool(p_rows.any()):  # the general path's arithmetic on the same [B, n] block
        n = int(k[p_rows].max())
        block = mask_to_neg_inf(vt[:, :n], kept[:, :n])  # [B, n], descending
        cum = torch.softmax(block, dim=1).flip(1).cumsum(1).flip(1)
        removed = cum <= (1.0 - p).unsqueeze(1)
        removed[:, 0] = False
        cutoff = block.gather(1, (~removed).sum(1, keepdim=True) - 1)  # [B, 1]
        cutoff = torch.where(p_rows.unsqueeze(1), cutoff, torch.full_like(cutoff, -torch.inf))
        kept &= vt >= cutoff
    # kept ids in ascending order, as the general path visits them
    ids, order = torch.where(kept, idx, V).sort(dim=1)  # [B, kmax + 1]
    live = ids < V
    if noise is not None:
        u = noise.gather(1, ids.clamp(max=V - 1)).to(torch.float32)
    else:
        gen = torch.Generator(device=z.device)
        gen.manual_seed(mix_seed(seed, step))
        u = torch.full_like(vt, 0.5)  # finite where nothing is drawn
        u[live] = torch.rand(int(live.sum()), generator=gen, device=z.device).clamp_(
            min=torch.finfo(torch.float32).tiny
        )
    g = mask_to_neg_inf(vt.gather(1, order) - torch.log(-torch.log(u)), live)
    return ids.gather(1, g.argmax(1, keepdim=True)).squeeze(1)


def sample_step_reference(
    logits: torch.Tensor,
    states: torch.Tensor,
    budgets: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    repetition_penalty: torch.Tensor,
    seen: torch.Tensor | None,
    tables,
    *,
    noise: torch.Tensor | None = None,
    seed: int = 0,
    step: int = 0,
) -> StepResult:
    """One step for the batch, exactly as the module docstring states it."""
    B, V = logits.shape
    bits = _allowed_bits(states, budgets, tables)  # [B, V] 0/1
    allowed = bits != 0
    x = apply_repetition_penalty(logits.to(torch.float32), seen, repetition_penalty)  # [B, V]
    z = mask_to_neg_inf(x, bits)  # [B, V]
    no_allowed = ~allowed.any(1)  # [B]

    t = temperature.to(torch.float32)  # [B]
    greedy = t <= 0
    sample_rows = ~greedy & ~no_allowed
    n_sample = int(sample_rows.sum())
    tokens = z.argmax(1) if n_sample < B else torch.zeros(B, dtype=torch.int64, device=z.device)
    fast = _small_top_k(z, bits, t, top_k, top_p, noise, seed, step) if n_sample == B else None
    if fast is not None:
        tokens = fast
    elif n_sample == B:  # the usual case: no row copies
        zs = z / t.unsqueeze(1)  # [B, V]
        kept = truncation_mask(zs, allowed, top_k, top_p)
        tokens = gumbel_argmax(zs, kept, noise, seed, step)
    elif n_sample > 0:
        rows = sample_rows.nonzero(as_tuple=True)[0]
        zs = z[rows] / t[rows].unsqueeze(1)  # [b, V]
        kept = truncation_mask(zs, allowed[rows], top_k[rows], top_p[rows])
        sub_noise = None if noise is None else noise[rows]
        tokens[rows] = gumbel_argmax(zs, kept, sub_noise, seed, step)
    tokens = tokens.masked_fill(no_allowed, -1)

    safe = tokens.clamp(min=0)
    cls = tables.class_of[safe].long()  # [B]
    nxt = tables.next_by_class[states.long(), cls]  # [B]
    next_states = torch.where(no_allowed, states.to(torch.int32), nxt.to(torch.int32))
    return StepResult(tokens, next_states, no_allowed)
