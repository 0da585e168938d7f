"""Randomness for one step: the uniform noise behind the Gumbel-max draw.

Every backend draws the token as ``argmax_i (z_i - log(-log u_i))`` over the kept tokens, with
``u[b, i]`` uniform in (0, 1). Callers either pass ``u`` in (tests: then every backend returns the
same tokens), or give every row a seed and a step counter and each backend computes ``u`` inside
the step from them. The generator is counter-based: ``u`` for token ``i`` of row ``b`` is a pure
function of ``(seeds[b], steps[b], i)``, so a row draws the same numbers whatever else shares its
batch and whatever its row number, and the torch reference, the Triton kernel and the CUDA kernel
compute exactly the same numbers (the three backends agree token for token without noise).

The generator, on unsigned 32-bit words (every sum and product reduced mod 2^32)::

    mix(x):  x ^= x >> 16;  x *= 0x21f0aaad;  x ^= x >> 15;  x *= 0x735a2d97;  x ^= x >> 15
    row key, from the int64 seed (its low and high words) and the int32 step (as its bits):
        k0 = mix(seed_lo ^ mix(step ^ 0x9e3779b9))
        k1 = mix(seed_hi ^ mix(k0 ^ 0x85ebca6b))
    token i:  h = mix((i ^ k0) * 0x61c88647 + k1)
              u = ((h >> 8) | 1) / 2^24          (= (2 * (h >> 9) + 1) / 2^24, exact in fp32)

``mix`` is a bijection of 32-bit words (an xorshift-multiply finaliser whose avalanche bias is
below what 2^16 samples can measure), and so is ``i -> h`` for a fixed row key: no two tokens of
a row share a number. ``u`` is an odd multiple of 2^-24 in ``[2^-24, 1 - 2^-24]``: never 0 or 1,
so ``-log(-log u)`` is always finite. Both multipliers and 0x61c88647 are below 2^31, so the
torch version below computes every product exactly in int64 (no overflow) and matches the
uint32 arithmetic of the kernels bit for bit. One mix per token keeps the CPU cost of a full
vocabulary draw low; the row key mixes the 96 bits of (seed, step) into 64.

Explicit noise is read through `clamp_noise`: NaN reads as 0.5, and values are clamped into
``[FLT_MIN, 1 - 2^-24]`` (every backend does the same), so it too gives finite Gumbel terms.

Seeds: the per-row form (``seeds`` int64[B], ``steps`` int32[B]) is what generation uses. The
scalar ``seed=s`` of `regexlm.ops.sample_step` is a convenience that gives row ``b`` the seed
``s + b`` (mod 2^64). Without any seed, a fresh one is drawn from torch's global generator on the
host (no device sync).
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
MUL1 = 0x21F0AAAD
MUL2 = 0x735A2D97
TOKEN_MUL = 0x61C88647
STEP_SALT = 0x9E3779B9
KEY_SALT = 0x85EBCA6B
U_SCALE = 2.0**-24  # u = ((h >> 8) | 1) * U_SCALE
U_MAX = 1.0 - 2.0**-24  # the largest fp32 below 1
FLT_MIN = 1.1754943508222875e-38  # the smallest normal fp32


# --- the generator in plain Python integers (the definition the tensor versions follow) -------


def mix32(x: int) -> int:
    """The 32-bit mixing bijection, on a Python int in [0, 2^32)."""
    x ^= x >> 16
    x = (x * MUL1) & MASK32
    x ^= x >> 15
    x = (x * MUL2) & MASK32
    return x ^ (x >> 15)


def row_key(seed: int, step: int) -> tuple[int, int]:
    """(k0, k1) of a row, from its seed (any int, read mod 2^64) and step (read mod 2^32)."""
    seed &= (1 << 64) - 1
    k0 = mix32((seed & MASK32) ^ mix32((step & MASK32) ^ STEP_SALT))
    k1 = mix32((seed >> 32) ^ mix32(k0 ^ KEY_SALT))
    return k0, k1


def uniform(seed: int, step: int, token: int) -> float:
    """The uniform number of one token (a Python float, exactly the fp32 value kernels use)."""
    k0, k1 = row_key(seed, step)
    h = mix32((((token & MASK32) ^ k0) * TOKEN_MUL + k1) & MASK32)
    return ((h >> 8) | 1) * U_SCALE


# --- the same on int64 tensors (32-bit values; every product stays below 2^63) ----------------


def mix32_tensor(x: torch.Tensor) -> torch.Tensor:
    """`mix32` on an int64 tensor of values in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = (x * MUL1) & MASK32
    x = x ^ (x >> 15)
    x = (x * MUL2) & MASK32
    return x ^ (x >> 15)


def row_keys(seeds: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row keys (k0, k1), int64[B] each in [0, 2^32), from seeds int64[B] and steps int32[B].

    On the CPU, a few rows are keyed with Python integers (a handful of tensor ops per row
    would cost more); elsewhere with tensor ops, so nothing waits for the device.
    """
    if seeds.device.type == "cpu" and seeds.shape[0] <= 64:
        keys = [row_key(s, t) for s, t in zip(seeds.tolist(), steps.tolist(), strict=True)]
        both = torch.tensor(keys, dtype=torch.int64).view(-1, 2)  # [B, 2]
        return both[:, 0], both[:, 1]
    seeds = seeds.to(torch.int64)
    lo = seeds & MASK32
    hi = (seeds >> 32) & MASK32  # arithmetic shift, then the high word's bits
    st = steps.to(torch.int64) & MASK32
    k0 = mix32_tensor(lo ^ mix32_tensor(st ^ STEP_SALT))
    k1 = mix32_tensor(hi ^ mix32_tensor(k0 ^ KEY_SALT))
    return k0, k1


def token_uniform(k0: torch.Tensor, k1: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """u fp32 for token ids (int64 in [0, 2^31), any shape) under row keys k0, k1 (broadcast
    against the ids). In-place ops on one buffer: this runs over every kept token on the CPU."""
    x = torch.add(k1, tokens ^ k0, alpha=TOKEN_MUL)  # k1 + (i ^ k0) * TOKEN_MUL, below 2^63
    x &= MASK32
    x ^= x >> 16
    x *= MUL1
    x &= MASK32
    x ^= x >> 15
    x *= MUL2
    x &= MASK32
    x ^= x >> 15
    x >>= 8
    x |= 1
    return x.to(torch.float32).mul_(U_SCALE)


def uniform_noise(seeds: torch.Tensor, steps: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The noise the backends compute in the step, as a tensor: fp32[B, V] on the seeds' device.

    Passing it as ``noise=`` gives the same tokens as passing ``seeds`` and ``steps``.
    """
    k0, k1 = row_keys(seeds, steps)  # [B]
    ids = torch.arange(vocab_size, dtype=torch.int64, device=seeds.device)  # [V]
    return token_uniform(k0.unsqueeze(1), k1.unsqueeze(1), ids.unsqueeze(0))  # [B, V]


def clamp_noise(u: torch.Tensor) -> torch.Tensor:
    """Explicit noise as every backend reads it: fp32, NaN -> 0.5, clamped to [FLT_MIN, U_MAX]."""
    u = u.to(torch.float32)
    return torch.where(u.isnan(), 0.5, u).clamp_(FLT_MIN, U_MAX)


# --- seeds ------------------------------------------------------------------------------------


def fresh_seed() -> int:
    """A seed from torch's global generator, for calls that give none."""
    return int(torch.randint(0, 2**62, (1,)).item())


def as_int64(value: int) -> int:
    """An integer read mod 2^64, as the signed int64 with the same bits."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def as_int32(value: int) -> int:
    """An integer read mod 2^32, as the signed int32 with the same bits."""
    value &= MASK32
    return value - (1 << 32) if value >= 1 << 31 else value


def seed_rows(seed: int, batch: int, device) -> torch.Tensor:
    """int64[B] seeds for the scalar form ``seed=s``: row b gets ``s + b`` (mod 2^64)."""
    return torch.tensor([as_int64(seed + b) for b in range(batch)], dtype=torch.int64).to(device)
