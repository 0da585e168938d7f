"""The per-step operation in plain torch: the specification, and the CPU production path.

One decode step, for each row b of the batch (s = states[b], R = budgets[b], T = temperature[b],
x = logits[b] in fp32; S states, N rows of ``next_by_class``, C classes, V tokens; r = row_of[s],
or s without a ``row_of``)::

    next(s, t) = next_by_class[r, class_of[t]]
    allowed = {t : 0 <= s < S, 0 <= r < N, 0 <= class_of[t] < C, 0 <= next(s, t) < S}
    if R >= 0 and min_tokens[s] <= R:                       # a match fits in the budget
        allowed = {t in allowed : min_tokens[next(s, t)] < R}  # i.e. <= R - 1, never computed
    if allowed is empty:
        return token -1, state s, no_allowed = True
    for t in allowed:                                        # repetition penalty
        if seen[b, t]: x[t] = x[t] * p if x[t] < 0 else x[t] / p
        if x[t] is NaN: x[t] = -inf                          # NaN logits (or penalties) read as -inf
    greedy = argmax_{t in allowed} x[t], lowest id on ties   # the lowest allowed id if all are -inf
    if not T > 0:                                            # 0, negative or NaN temperature
        return greedy
    z = x / min(T, FLT_MAX)
    if max_{t in allowed} z[t] is not finite:                # degenerate row: see below
        return greedy
    kept = allowed
    if 0 < top_k:  kept = {t in kept : z[t] >= k-th largest z over kept}
    if top_p < 1:                                            # transformers' top-p, ties kept
        q = softmax(z over kept)
        kept = {t in kept : sum(q[u] for u in kept if z[u] <= z[t]) > 1 - top_p}
        kept = kept or {argmax}                              # always keeps the largest
    token = argmax_{t in kept} (z[t] - log(-log u[b, t]))     # Gumbel-max, lowest id on ties
    return token, next(s, token), False

Degenerate rows. A row whose processed scores give no finite maximum -- every allowed logit is
-inf or NaN, a penalty or a tiny temperature overflowed a score to +inf -- takes the greedy token:
the allowed token with the largest penalised logit, lowest id on ties, and so the lowest-id
allowed token when every allowed logit is -inf or NaN. The same holds for a NaN temperature
(``NaN > 0`` is false). A huge temperature (even +inf) is read as FLT_MAX, so the scores stay
numbers. Either way the token is allowed and the state advances through it; no table is read
outside its bounds, whatever the states, classes, budgets or ``min_tokens`` (INT32_MAX means "no
match reachable"; the budget test is ``min_tokens[next] < R``, so R - 1 is never formed).

Noise. ``u`` comes from ``noise`` (read through `regexlm.ops.noise.clamp_noise`) or, without it,
from the counter-based generator of `regexlm.ops.noise` keyed by the row's seed and step and
counted by the token id, the numbers the Triton and CUDA kernels compute too.

The top-p cumulative sum is taken in ascending order of probability, as in transformers'
``TopPLogitsWarper``; tokens tied with the last kept token are kept too, the same rule top-k
follows. The Gumbel-max draw samples exactly from ``softmax(z)`` restricted to the kept set.

Rows of one batch may read different tables (:class:`regexlm.ops.types.TableGroups`): each
group's rows are masked and advanced through the group's own tables, and everything between
(penalty, temperature, truncation, draw) runs once for the whole batch. Every line above is per
row, so a row gets the same result in a batch of groups as in a step of its own.

Vectorized over the batch: the allowed test is made per class (``[B, C]``, budget included) and
spread to tokens through ``class_of``; top-k uses ``torch.topk`` with the batch's largest k; top-p
sorts only the tokens top-k kept (or, without top-k, the allowed ones) with ``torch.topk``; the
noise is computed only for the kept tokens. When every row samples with a small top-k, a short
path works on the ``k + 1`` largest values alone and returns the same tokens (a tie across the
k-th value, which would keep extra tokens, sends the batch down the general path).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import torch

from regexlm.ops.noise import FLT_MIN, clamp_noise, row_keys, token_uniform
from regexlm.ops.types import StepResult, TableGroups

FLT_MAX = 3.4028234663852886e38

# (id of class_of, C) -> (a weak reference to it, its version, safe classes, counts), least
# recently used first; bounded by the bytes of what it holds (a batch of many patterns keeps
# each one's: 8 bytes a token, 2 MB at 262,144 tokens)
_CLASS_CACHE: OrderedDict[tuple[int, int], tuple] = OrderedDict()
CLASS_CACHE_BYTES = 32 << 20
_class_cache_bytes = [0]
_class_cache_lock = threading.Lock()


def _classes(class_of: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(``class_of`` as int64 with every value outside ``[0, C)`` replaced by C, a class that is
    never allowed; tokens per class int64[C + 1]). Cached for the tables seen last (up to
    :data:`CLASS_CACHE_BYTES`), while the tensor is not written to."""
    key = (id(class_of), num_classes)
    with _class_cache_lock:
        hit = _CLASS_CACHE.get(key)
        if hit is not None and hit[0]() is class_of and hit[1] == class_of._version:
            _CLASS_CACHE.move_to_end(key)
            return hit[2], hit[3]
    c = class_of.long()
    safe = torch.where((c >= 0) & (c < num_classes), c, num_classes)
    counts = torch.bincount(safe, minlength=num_classes + 1)
    size = safe.numel() * 8 + counts.numel() * 8
    with _class_cache_lock:
        for old in [k for k, v in _CLASS_CACHE.items() if k == key or v[0]() is None]:
            _class_cache_bytes[0] -= _CLASS_CACHE.pop(old)[4]  # replaced, or its tables gone
        while _CLASS_CACHE and _class_cache_bytes[0] + size > CLASS_CACHE_BYTES:
            _class_cache_bytes[0] -= _CLASS_CACHE.popitem(last=False)[1][4]
        _CLASS_CACHE[key] = (weakref.ref(class_of), class_of._version, safe, counts, size)
        _class_cache_bytes[0] += size
    return safe, counts


def safe_classes(class_of: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``class_of`` as int64, with every value outside ``[0, C)`` replaced by C."""
    return _classes(class_of, num_classes)[0]


def _groups(tables, device):
    """(tables, int64 positions) of each group of rows of a :class:`TableGroups`."""
    return zip(tables.tables, tables.position_tensors(device), strict=True)


def _allowed(states: torch.Tensor, budgets: torch.Tensor, tables):
    """Grammar mask and budget mask together: (int32[B, V] of 0/1, allowed count int64[B])."""
    if isinstance(tables, TableGroups):
        B, dev = states.shape[0], states.device
        bits = torch.empty(B, tables.tables[0].class_of.shape[0], dtype=torch.int32, device=dev)
        counts = torch.empty(B, dtype=torch.int64, device=dev)
        for group, rows in _groups(tables, dev):
            bits[rows], counts[rows] = _allowed(states[rows], budgets[rows], group)
        return bits, counts  # [B, V], [B]
    nbc, min_tokens = tables.next_by_class, tables.min_tokens
    num_rows, C = nbc.shape
    S = min_tokens.shape[0]
    V = tables.class_of.shape[0]
    B = states.shape[0]
    if S == 0 or num_rows == 0:
        zero = torch.zeros(B, dtype=torch.int64, device=states.device)
        return torch.zeros(B, V, dtype=torch.int32, device=states.device), zero
    s_ok, sc, row = _rows_of_states(states, tables)  # [B] each
    nxt = nbc[row].long()  # [B, C]
    ok = (nxt >= 0) & (nxt < S) & s_ok.unsqueeze(1)  # [B, C]
    R = budgets.long()  # [B]
    active = s_ok & (R >= 0) & (min_tokens[sc].long() <= R)  # [B]
    if bool(active.any()):
        mt = min_tokens[nxt.clamp(0, S - 1)].long()  # [B, C]
        ok &= (mt < R.unsqueeze(1)) | ~active.unsqueeze(1)
    class_ok = torch.zeros(B, C + 1, dtype=torch.int32, device=states.device)  # [B, C + 1]
    class_ok[:, :C] = ok
    cls, counts = _classes(tables.class_of, C)
    n_allowed = (class_ok.long() * counts).sum(1)  # [B]
    return class_ok.gather(1, cls.expand(B, V)), n_allowed


def _rows_of_states(states: torch.Tensor, tables):
    """For ``states`` [B]: (whether the state and its row are in range, the state clamped into
    range, its row clamped into range), each [B]."""
    S = tables.min_tokens.shape[0]
    num_rows = tables.next_by_class.shape[0]
    s = states.long()  # [B]
    s_ok = (s >= 0) & (s < S)  # [B]
    sc = s.clamp(0, S - 1)
    row_of = getattr(tables, "row_of", None)
    row = sc if row_of is None else row_of[sc].long()  # [B]
    s_ok &= (row >= 0) & (row < num_rows)
    return s_ok, sc, row.clamp(0, num_rows - 1)


def _allowed_bits(states: torch.Tensor, budgets: torch.Tensor, tables) -> torch.Tensor:
    """Grammar mask and budget mask together: int32[B, V] of 0/1."""
    return _allowed(states, budgets, tables)[0]


def allowed_mask(states: torch.Tensor, budgets: torch.Tensor, tables) -> torch.Tensor:
    """Grammar mask and budget mask together: bool[B, V]."""
    return _allowed_bits(states, budgets, tables) != 0


def mask_to_neg_inf(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x`` where ``keep`` (0/1 ints or bools) holds, -inf elsewhere, by adding 0 or -inf.

    The bias is made with integer ops: (keep - 1) & 0xff800000 is 0 (0.0) or the bits of -inf;
    on CPU this is several times faster than ``masked_fill`` or ``where``. A NaN or +inf in ``x``
    where ``keep`` is 0 gives NaN: callers clear NaNs afterwards.
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


def processed_logits(logits, seen, penalty, bits) -> torch.Tensor:
    """Penalised logits, -inf where ``bits`` is 0 and where the value is NaN: fp32[B, V]."""
    x = apply_repetition_penalty(logits.to(torch.float32), seen, penalty)
    z = mask_to_neg_inf(x, bits)  # a new tensor
    return z.nan_to_num_(nan=-torch.inf, posinf=torch.inf, neginf=-torch.inf)


def greedy_tokens(z: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """argmax of ``z`` [B, V] over allowed tokens, lowest id on ties; the lowest allowed id when
    every allowed value is -inf. int64[B] (0 for a row with nothing allowed)."""
    m, idx = z.max(1)  # first index of the maximum
    empty = m == -torch.inf
    if bool(empty.any()):
        idx = torch.where(empty, allowed.to(torch.uint8).argmax(1), idx)
    return idx


def truncation_mask(
    z: torch.Tensor,
    allowed: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    n_allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Tokens kept by top-k then top-p (ties at each boundary kept): bool[B, V].

    ``z`` [B, V] holds temperature-scaled logits, -inf where not allowed, a finite maximum.
    """
    B, V = z.shape
    kept = allowed
    if n_allowed is None:
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


def _uniform(rows, cols, noise, keys) -> torch.Tensor:
    """u at (rows, cols): from ``noise`` [B, V] when given, else from the row keys (k0, k1)."""
    if noise is not None:
        return clamp_noise(noise[rows, cols])
    k0, k1 = keys
    return token_uniform(k0[rows], k1[rows], cols)


def gumbel_argmax(z: torch.Tensor, kept: torch.Tensor, noise, keys) -> torch.Tensor:
    """``argmax_{kept} z - log(-log u)``, lowest id on ties: int64[B] (V where nothing is kept).

    ``u`` is read (``noise`` [B, V]) or computed (``keys``: the rows' (k0, k1)) at kept tokens.
    """
    rows, cols = kept.nonzero(as_tuple=True)  # kept positions, row-major
    u = _uniform(rows, cols, noise, keys)
    g = z[rows, cols] - torch.log(-torch.log(u))  # [nnz]
    # per-row argmax over the compact list, lowest id on ties (cols ascend within a row)
    B, V = z.shape
    best = torch.full((B,), -torch.inf, device=z.device).scatter_reduce(0, rows, g, "amax")
    win = g == best[rows]
    first = torch.full((B,), V, dtype=torch.int64, device=z.device)
    return first.scatter_reduce(0, rows[win], cols[win], "amin")


SMALL_K = 256  # rows with 0 < top_k <= SMALL_K take the short path below


def _small_top_k(z, n_allowed, t, top_k, top_p, noise, keys):
    """The same tokens as the general path when every row samples with a small top-k.

    Works on the ``k + 1`` largest values only (``torch.topk``), so nothing else touches all V
    tokens. Returns None (use the general path) when a row has no top-k, a large k, k at least
    its allowed count, no finite maximum, or a tie across its k-th value. ``t`` is the rows'
    effective temperature.
    """
    k = top_k.long()  # [B]
    if not bool((k > 0).all()):
        return None
    kmax = int(k.max())
    B, V = z.shape
    if kmax >= SMALL_K or kmax + 1 > V or not bool((k < n_allowed).all()):
        return None
    vals, idx = torch.topk(z, kmax + 1, dim=1)  # [B, kmax + 1], descending
    vt = vals / t.unsqueeze(1)
    if not bool(torch.isfinite(vt[:, 0]).all()):
        return None  # a degenerate row: the general path gives it the greedy token
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
    # kept ids in ascending order, lowest id first on Gumbel ties as in the general path
    ids, order = torch.where(kept, idx, V).sort(dim=1)  # [B, kmax + 1]
    live = ids < V
    safe = ids.clamp(max=V - 1)
    if noise is not None:
        u = clamp_noise(noise.gather(1, safe))
    else:
        u = token_uniform(keys[0].unsqueeze(1), keys[1].unsqueeze(1), safe)  # [B, kmax + 1]
    g = mask_to_neg_inf(vt.gather(1, order) - torch.log(-torch.log(u)), live)
    return ids.gather(1, g.argmax(1, keepdim=True)).squeeze(1)


# On the CPU, rows step in passes of as many as keep one [rows, V] float32 buffer within about
# PASS_BYTES (PASS_ROWS at least, or a pass's fixed costs dominate), so that a pass's working
# set stays in a core's cache: 16 rows at 49,152 tokens, 8 at 262,144 (a batch of 64 rows
# steps about 1.5 times as fast in passes as in one). Rows that read different tables pass
# group by group. Every rule is per row, so the passes change no result. On a GPU, one pass.
PASS_BYTES = 3 << 20
PASS_ROWS = 8


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
    seeds: torch.Tensor | None = None,
    steps: torch.Tensor | None = None,
) -> StepResult:
    """One step for the batch, exactly as the module docstring states it.

    ``noise`` fp32[B, V], or ``seeds`` int64[B] and ``steps`` int32[B] (zeros when omitted).
    """
    B, V = logits.shape
    rows = B if logits.device.type != "cpu" else max(PASS_ROWS, PASS_BYTES // (4 * max(V, 1)))
    inputs = dict(
        logits=logits,
        states=states,
        budgets=budgets,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        seen=seen,
        noise=noise,
        seeds=seeds,
        steps=steps,
    )
    if B <= rows:
        return _step(**inputs, tables=tables)
    if not isinstance(tables, TableGroups):  # passes of consecutive rows, read in place
        parts = [
            _step(
                **{k: _cut(v, slice(start, start + rows)) for k, v in inputs.items()}, tables=tables
            )
            for start in range(0, B, rows)
        ]
        return StepResult(*(torch.cat([getattr(p, f) for p in parts]) for f in _RESULT_FIELDS))
    order = [b for positions in tables.positions for b in positions]  # group by group
    passes = [order[start : start + rows] for start in range(0, B, rows)]
    return step_in_parts(_step, inputs, passes, [_tables_of_rows(tables, p) for p in passes])


_RESULT_FIELDS = ("tokens", "next_states", "no_allowed")


def _cut(t: torch.Tensor | None, rows) -> torch.Tensor | None:
    return None if t is None else t[rows]


def step_in_parts(step, inputs: dict, parts: list, tables: list) -> StepResult:
    """One result for a batch stepped part by part: ``step(**inputs of the part's rows,
    tables=the part's tables)`` for each part (``parts``: lists of row positions, every row in
    one), its rows gathered and its results scattered back. The torch step's passes and the
    fused kernels' groups (:func:`regexlm.ops.dispatch.step_per_group`) both run this way."""
    logits = inputs["logits"]
    B, device = logits.shape[0], logits.device
    out = StepResult(
        torch.empty(B, dtype=torch.int64, device=device),
        torch.empty(B, dtype=torch.int32, device=device),
        torch.empty(B, dtype=torch.bool, device=device),
    )
    for taken, part_tables in zip(parts, tables, strict=True):
        at = torch.tensor(taken, dtype=torch.int64, device=device)
        part = step(
            **{k: None if v is None else v.index_select(0, at) for k, v in inputs.items()},
            tables=part_tables,
        )
        for field in _RESULT_FIELDS:
            getattr(out, field)[at] = getattr(part, field)
    return out


def _tables_of_rows(groups: TableGroups, taken: list[int]):
    """The tables of the rows ``taken`` (their positions in the batch), numbered as they are
    listed: one group's tables where they all read one, else the groups cut to them."""
    local = {b: i for i, b in enumerate(taken)}
    kept = []
    for tables, positions in zip(groups.tables, groups.positions, strict=True):
        mine = tuple(local[b] for b in positions if b in local)
        if mine:
            kept.append((tables, mine))
    if len(kept) == 1:
        return kept[0][0]
    return TableGroups(tuple(t for t, _ in kept), tuple(p for _, p in kept))


def _step(
    logits, states, budgets, temperature, top_k, top_p, repetition_penalty, seen, tables, *,
    noise, seeds, steps,
) -> StepResult:  # fmt: skip
    """:func:`sample_step_reference` for one pass of rows."""
    B, V = logits.shape
    dev = logits.device
    if B == 0 or V == 0:
        return StepResult(
            torch.full((B,), -1, dtype=torch.int64, device=dev),
            states.to(torch.int32).clone(),
            torch.ones(B, dtype=torch.bool, device=dev),
        )
    bits, n_allowed = _allowed(states, budgets, tables)  # [B, V] 0/1, [B]
    z = processed_logits(logits, seen, repetition_penalty, bits)  # [B, V]
    no_allowed = n_allowed == 0  # [B]

    t = temperature.to(torch.float32)  # [B]
    sampling = (t > 0) & ~no_allowed  # NaN temperatures are not > 0: greedy
    t_eff = torch.where(sampling, t.clamp(max=FLT_MAX), 1.0)  # [B]
    keys = None
    if noise is None and bool(sampling.any()):
        if seeds is None:
            seeds = torch.zeros(B, dtype=torch.int64, device=dev)
        if steps is None:
            steps = torch.zeros(B, dtype=torch.int32, device=dev)
        keys = row_keys(seeds, steps)  # ([B], [B])
    tokens = None
    if bool(sampling.all()):  # the usual case: try the short path first
        tokens = _small_top_k(z, n_allowed, t_eff, top_k, top_p, noise, keys)
    if tokens is None:
        allowed = bits != 0
        greedy = greedy_tokens(z, allowed)  # [B]
        zmax = z.gather(1, greedy.unsqueeze(1)).squeeze(1)  # [B], the row maximum
        sampling &= torch.isfinite(zmax / t_eff)  # degenerate rows take the greedy token
        tokens = greedy
        n_sample = int(sampling.sum())
        if n_sample == B:  # no row copies
            zs = z / t_eff.unsqueeze(1)  # [B, V]
            kept = truncation_mask(zs, allowed, top_k, top_p, n_allowed)
            tokens = gumbel_argmax(zs, kept, noise, keys)
        elif n_sample > 0:
            rows = sampling.nonzero(as_tuple=True)[0]
            zs = z[rows] / t_eff[rows].unsqueeze(1)  # [b, V]
            kept = truncation_mask(zs, allowed[rows], top_k[rows], top_p[rows], n_allowed[rows])
            sub_noise = None if noise is None else noise[rows]
            sub_keys = None if keys is None else (keys[0][rows], keys[1][rows])
            tokens = tokens.clone()
            tokens[rows] = gumbel_argmax(zs, kept, sub_noise, sub_keys)
        if n_sample > 0 and bool((tokens >= V).any()):  # nothing kept: not with a finite max
            tokens = torch.where(tokens < V, tokens, greedy)
    tokens = tokens.masked_fill(no_allowed, -1)

    next_states = states.to(torch.int32).clone()  # never an alias of the caller's tensor
    if not bool(no_allowed.all()):
        nxt = _advance(states, tokens, tables)  # [B]
        next_states = torch.where(no_allowed, next_states, nxt)
    return StepResult(tokens, next_states, no_allowed)


def _advance(states: torch.Tensor, tokens: torch.Tensor, tables) -> torch.Tensor:
    """int32[B]: each row's next state through its token (rows with token -1 read a class
    clamped into range; the caller keeps their state)."""
    if isinstance(tables, TableGroups):
        out = torch.empty_like(states, dtype=torch.int32)
        for group, rows in _groups(tables, states.device):
            out[rows] = _advance(states[rows], tokens[rows], group)
        return out
    C = tables.next_by_class.shape[1]
    cls = _classes(tables.class_of, C)[0][tokens.clamp(min=0)].clamp(max=C - 1)  # [B]
    return tables.next_by_class[_rows_of_states(states, tables)[2], cls].to(torch.int32)


__all__ = [
    "FLT_MAX",
    "FLT_MIN",
    "allowed_mask",
    "apply_repetition_penalty",
    "greedy_tokens",
    "gumbel_argmax",
    "mask_to_neg_inf",
    "processed_logits",
    "safe_classes",
    "sample_step_reference",
    "truncation_mask",
]
