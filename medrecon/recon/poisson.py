"""The pre-log Poisson likelihood of a transmission CT scan (issue 21).

Counts ``N_i ~ Poisson(ybar_i)`` with ``ybar_i = I0 exp(-l_i) + r_i`` (``l = A mu`` the line integrals, ``r``
scatter or dark counts). Electronic noise of standard deviation ``sigma`` makes ``N`` Gaussian-shifted and possibly
negative; the shifted-Poisson model (Snyder et al. 1993; Yavuz & Fessler 1998) treats ``N + sigma^2`` as Poisson
with mean ``ybar + sigma^2`` and clamps it at zero, so a non-positive count never gives NaN.

Per ray, as a function of its line integral:

    h_i(l) = ybar'_i(l) - N'_i log ybar'_i(l) + log Gamma(N'_i + 1),   ybar' = I0 exp(-l) + r + sigma^2,
                                                                        N'    = max(N + sigma^2, 0)

so ``sum_i h_i`` is exactly ``-log p(N | l)`` (``scipy.stats.poisson.logpmf`` for integer counts). Its
derivative is ``h'_i(l) = I0 exp(-l) (N'_i / ybar'_i - 1)``. :func:`poisson_curvature` gives the maximum-curvature
bound of Erdogan & Fessler (1999): for ``l >= 0`` the quadratic with that curvature lies above ``h_i``, the
separable surrogate that CG-type steps can minimize in place of the exact likelihood.
"""

from __future__ import annotations

import torch

__all__ = ["poisson_nll", "poisson_nll_grad", "poisson_curvature"]


def _shifted(l: torch.Tensor, counts: torch.Tensor, photons: float, background: float, electronic_std: float):
    if not photons > 0:
        raise ValueError(f"the Poisson likelihood needs the incident count I0 > 0, got {photons}")
    s2 = float(electronic_std) ** 2
    transmitted = float(photons) * torch.exp(-l)
    ybar = transmitted + float(background) + s2
    n = (counts + s2).clamp_min(0.0)
    return transmitted, ybar, n


def poisson_nll(l: torch.Tensor, counts: torch.Tensor, photons: float, background: float = 0.0,
                electronic_std: float = 0.0) -> torch.Tensor:
    """``-log p(counts | l)`` per slice, summed over the slice's rays.

    Args:
        l: model line integrals ``A mu``, ``(S, views, detectors)``.
        counts: measured counts, same shape (may be zero or negative with electronic noise).
        photons: incident counts per ray ``I0``.
        background: scatter / dark counts ``r`` per ray.
        electronic_std: electronic noise standard deviation, in counts.

    Returns:
        ``(S,)``.
    """
    _, ybar, n = _shifted(l, counts, photons, background, electronic_std)
    per_ray = ybar - n * torch.log(ybar) + torch.lgamma(n + 1.0)
    return per_ray.flatten(1).sum(dim=1)


def poisson_nll_grad(l: torch.Tensor, counts: torch.Tensor, photons: float, background: float = 0.0,
                     electronic_std: float = 0.0) -> torch.Tensor:
    """``d(-log p) / dl`` per ray, ``I0 exp(-l) (N' / ybar' - 1)``; same shape as ``l``. The gradient in the image
    is ``A^T`` of this."""
    transmitted, ybar, n = _shifted(l, counts, photons, background, electronic_std)
    return transmitted * (n / ybar - 1.0)


def poisson_curvature(counts: torch.Tensor, photons: float, background: float = 0.0,
                      electronic_std: float = 0.0) -> torch.Tensor:
    """Maximum curvature ``c_i = [h''_i(0)]_+`` of each ray's ``h_i`` over ``l >= 0`` (Erdogan & Fessler 1999).

    ``h''(l) = I0 exp(-l) (1 - N' b / ybar'^2)`` with ``b = r + sigma^2``. Both factors fall as ``l`` grows (while
    the second is positive), so over ``l >= 0`` the curvature is largest at ``l = 0``, and
    ``h(l0) + h'(l0) (l - l0) + c / 2 (l - l0)^2 >= h(l)`` for all ``l, l0 >= 0``. Shape as ``counts``.
    """
    zero = torch.zeros_like(counts)
    transmitted, ybar, n = _shifted(zero, counts, photons, background, electronic_std)
    b = ybar - transmitted
    return (transmitted * (1.0 - n * b / ybar.square())).clamp_min(0.0)
