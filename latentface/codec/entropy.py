"""The small entropy-coding pieces of the ``learned`` codec, in plain PyTorch.

- :func:`ste_round`: rounding whose gradient is the identity (straight-through).
- :func:`noisy`: additive uniform noise in [-0.5, 0.5), the differentiable stand-in for
  rounding when the rate is estimated during training.
- :func:`gain_quantise`: JPEG AI's gain-scaled residual coding. The coded symbols are
  ``r = round((y - mu) * g)`` with a per-channel gain ``g`` (one gain vector per rate);
  the decoder rebuilds ``y_hat = mu + r / g``. Where the predicted scale is small
  (``sigma * g < threshold``) the residual is skipped: no symbol, ``y_hat = mu``.
- :func:`gaussian_likelihood`: the probability of an integer symbol under a zero-mean
  Gaussian of scale ``s``, i.e. the CDF difference over the quantisation bin
  ``Phi((r + 0.5) / s) - Phi((r - 0.5) / s)``; ``-log2`` of it is the symbol's cost in bits.

Every function works on tensors of any shape that broadcast together.
"""

from __future__ import annotations

import math

import torch

#: Smallest scale the likelihood uses (a smaller one would make the bin probability 0 or 1 numerically).
SCALE_BOUND = 0.11
#: Smallest probability a symbol is given: caps the cost of one symbol at about 30 bits.
LIKELIHOOD_BOUND = 1e-9
#: Residuals whose scaled standard deviation ``sigma * g`` is below this are skipped.
SKIP_THRESHOLD = 0.25


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` in the forward pass, gradient 1 in the backward pass (straight-through)."""
    return x + (torch.round(x) - x).detach()


def noisy(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x + u`` with ``u ~ U[-0.5, 0.5)``: the training proxy of rounding for the rate term."""
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) - 0.5
    return x + u


def skip_mask(sigma: torch.Tensor, gain: torch.Tensor, threshold: float = SKIP_THRESHOLD) -> torch.Tensor:
    """Boolean mask of the skipped residuals: where ``sigma * gain < threshold``.

    The decoder knows ``sigma`` (from the hyperprior) and ``gain`` (from the rate), so it
    knows the mask without any signalling.
    """
    return (sigma * gain) < threshold


def gain_quantise(
    y: torch.Tensor,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    gain: torch.Tensor,
    threshold: float = SKIP_THRESHOLD,
    mode: str = "round",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gain-scaled quantisation with skip -> ``(y_hat, r, skipped)``.

    ``r`` are the coded symbols ``(y - mu) * gain`` quantised by ``mode``: ``"round"``
    (inference), ``"ste"`` (rounding with a straight-through gradient) or ``"noise"``
    (uniform noise). Skipped positions have ``r = 0`` and ``y_hat = mu`` exactly.
    """
    skipped = skip_mask(sigma, gain, threshold)
    scaled = (y - mu) * gain
    if mode == "round":
        r = torch.round(scaled)
    elif mode == "ste":
        r = ste_round(scaled)
    elif mode == "noise":
        r = noisy(scaled, generator)
    else:
        raise ValueError(f"mode must be 'round', 'ste' or 'noise', got {mode!r}")
    r = torch.where(skipped, torch.zeros_like(r), r)
    return mu + r / gain, r, skipped


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


def gaussian_likelihood(
    r: torch.Tensor,
    scale: torch.Tensor,
    mean: torch.Tensor | float = 0.0,
    scale_bound: float = SCALE_BOUND,
    bound: float = LIKELIHOOD_BOUND,
) -> torch.Tensor:
    """Probability of the bin ``[r - 0.5, r + 0.5]`` under ``N(mean, scale)``, at least ``bound``.

    Computed on the side of the mean where the CDF is small, so the tails stay accurate:
    ``Phi(-(|v| - 0.5) / s) - Phi(-(|v| + 0.5) / s)`` with ``v = r - mean``.
    """
    s = torch.clamp(scale, min=scale_bound)
    v = torch.abs(r - mean)
    upper = _std_normal_cdf((0.5 - v) / s)
    lower = _std_normal_cdf((-0.5 - v) / s)
    return torch.clamp(upper - lower, min=bound)


def bits(likelihood: torch.Tensor) -> torch.Tensor:
    """Total cost in bits of symbols of the given likelihoods: ``sum(-log2 p)``."""
    return -torch.log2(likelihood).sum()
