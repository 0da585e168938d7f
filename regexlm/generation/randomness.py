"""Per-row randomness: each sampled row draws its noise from its own generator.

The sampling step draws a token as ``argmax(z - log(-log u))`` over uniform noise ``u`` (see
:mod:`regexlm.ops`). Giving every sampled row its own ``torch.Generator``, seeded with the
request's seed (or a fresh seed drawn from torch's global generator), makes a seeded request
produce the same tokens alone or in any batch, on the same device type. Greedy rows need no
noise and draw none.
"""

from __future__ import annotations

import torch

_TINY = torch.finfo(torch.float32).tiny


def row_generator(temperature: float, seed: int | None, device) -> torch.Generator | None:
    """The row's own random stream; None for a greedy row."""
    if temperature == 0:
        return None
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def draw_noise(
    generators: list[torch.Generator | None], vocab_width: int, device
) -> torch.Tensor | None:
    """Uniform noise in (0, 1): [B, V], row b from ``generators[b]``; None when all are greedy."""
    if all(g is None for g in generators):
        return None
    noise = torch.full((len(generators), vocab_width), 0.5, dtype=torch.float32, device=device)
    for b, generator in enumerate(generators):
        if generator is not None:
            noise[b] = torch.rand(vocab_width, generator=generator, device=device)
    # torch.rand is [0, 1): an exact 0 becomes the smallest normal float.
    return noise.clamp_(min=_TINY)
