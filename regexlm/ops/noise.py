"""Randomness for one step: the uniform noise behind the Gumbel-max draw.

Every backend draws the token as ``argmax_i (z_i - log(-log u_i))`` over the kept tokens, with
``u[b, i]`` uniform in (0, 1). Callers either pass ``u`` in (then every backend returns the same
tokens) or pass a ``seed`` and a ``step`` counter, and each backend makes its own noise from them:

- torch backend: a ``torch.Generator`` on the logits' device, seeded with ``mix_seed(seed, step)``,
  draws ``u`` with ``torch.rand`` for the kept tokens only, row by row in ascending token order.
  Reproducible for the same seed, step, inputs and device type.
- Triton and CUDA backends: a counter-based generator (Philox) keyed by ``mix_seed(seed, step)``
  and counted by ``b * V + i``. Reproducible for the same seed, step, shape and backend.

The streams differ between backends, so a seed reproduces a request on the same backend only.
Without a seed, the seed itself is drawn from torch's global generator (on the host, no sync).
"""

from __future__ import annotations

import torch

_MASK63 = (1 << 63) - 1


def mix_seed(seed: int, step: int) -> int:
    """A 63-bit seed for one step: splitmix64 of the request seed combined with the step."""
    x = (int(seed) * 0x9E3779B97F4A7C15 + int(step) + 0x632BE59BD9B4E019) & ((1 << 64) - 1)
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (x ^ (x >> 31)) & _MASK63


def fresh_seed() -> int:
    """A seed from torch's global generator, for requests that give none."""
    return int(torch.randint(0, 2**62, (1,)).item())


def uniform_noise(
    shape: tuple[int, int], seed: int, step: int, device: torch.device
) -> torch.Tensor:
    """Uniform noise in (0, 1) from a generator seeded by (seed, step); fp32 on `device`."""
    gen = torch.Generator(device=device)
    gen.manual_seed(mix_seed(seed, step))
    u = torch.rand(shape, generator=gen, device=device, dtype=torch.float32)
    # torch.rand is [0, 1): move an exact 0 to the smallest normal float.
    return u.clamp_(min=torch.finfo(torch.float32).tiny)
