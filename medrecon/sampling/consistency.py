"""Exact data consistency at the end of any sampler, and how far an image is from its data.

A diffusion sampler's output ``p`` agrees with the measurements only as far as its last data-consistency
step took it (DPS: a gradient step; the fast sampler: a few CG steps). :func:`final_dc` finishes the job
with CG on the normal equations ``A^H A p = A^H y`` started from ``p``:

- **Range and null space.** Every CG residual ``A^H (y - A p)`` lies in ``range(A^H)``, the orthogonal
  complement of ``null(A)``, and so does every update; the component of ``p`` in ``null(A)``, which is what
  the prior alone decided (the unmeasured k-space, the missing views), is left exactly as the sampler drew
  it, while the range component moves towards the data. This is the range-null-space decomposition of
  DDNM (Wang, Yu & Zhang, "Zero-shot image restoration using denoising diffusion null-space model",
  ICLR 2023), ``p = A^+ y + (I - A^+ A) p``, reached iteratively.
- **Noise.** Fitting noisy data exactly fits the noise too. Each row therefore stops by Morozov's
  discrepancy principle (Morozov 1966; Engl, Hanke & Neubauer, "Regularization of Inverse Problems",
  1996, 4.3) as soon as ``||A p - y||^2 <= m * noise_var``, the residual the true image would leave
  (``m`` measured entries, :func:`measured_count`); the CG step that would cross that level is shortened to
  land on it (:func:`~.cg.cg_discrepancy`). Noiseless data (``noise_var = 0``) runs every iteration (up to
  rounding level), so the measured entries become exact as CG converges.
- **Support.** With ``problem.support`` the solve is on ``A P`` (``P`` zeroes the pixels outside it), so
  the pixels the sampler left at ``p = 0`` stay there.

:func:`data_misfit` and :func:`noise_misfit` put a number on the result: the relative residual of an
image, and the one a perfect image would have.
"""

from __future__ import annotations

import math

import torch

from .cg import cg_discrepancy
from .problem import InverseProblem

__all__ = ["data_misfit", "final_dc", "measured_count", "noise_misfit"]


def measured_count(problem: InverseProblem) -> int:
    """``m``: the entries of one row of ``y`` that hold a measurement.

    Cartesian MRI keeps its mask (``(H, W)``, stored once for all coils) as ``A.mask``; the unsampled
    k-space locations of ``y`` are zeros, not measurements, so ``m`` = sampled locations x coils. Any other
    operator (CT) measures every entry of its output.
    """
    per_row = math.prod(problem.A.out_shape)
    mask = getattr(problem.A, "mask", None)
    if isinstance(mask, torch.Tensor) and 0 < mask.dim() <= len(problem.A.out_shape) \
            and tuple(mask.shape) == tuple(problem.A.out_shape[-mask.dim():]):
        per_row = int(torch.count_nonzero(mask)) * (per_row // mask.numel())
    return per_row


@torch.no_grad()
def final_dc(problem: InverseProblem, p: torch.Tensor, iters: int) -> torch.Tensor:
    """At most ``iters`` CG iterations on ``A^H A p = A^H y`` from ``p``, per row, stopping at the noise level.

    Args:
        problem: the measurements (rows as ``p``'s).
        p: physical images, ``problem.to_phys`` of a chain's output.
        iters: the most CG iterations of any row (0: ``p`` unchanged).

    Returns:
        The corrected images, same shape and dtype as ``p``. A row stops once ``||A p - y||^2 <=
        m * noise_var`` (it may stop at once; its last step lands on that level), or when its normal-equation
        residual reaches rounding level.

    Shapes:
        p: ``(B, H, W)``, complex for MRI, real for CT; ``B = problem.batch``.
    """
    if iters <= 0:
        return p
    floor = measured_count(problem) * problem.noise_var.to(p.device, p.real.dtype)
    return cg_discrepancy(problem.A, problem.y, p, iters, floor=floor, keep=problem.support)


def _norms(problem: InverseProblem) -> torch.Tensor:
    return torch.linalg.vector_norm(problem.y.reshape(problem.batch, -1), dim=1).double()


@torch.no_grad()
def data_misfit(problem: InverseProblem, p: torch.Tensor) -> torch.Tensor:
    """``||A p - y|| / ||y||`` per row. Shapes: ``p`` ``(B, H, W)`` -> ``(B,)`` float64 (inf where ``y = 0``)."""
    r = (problem.A(p) - problem.y).reshape(problem.batch, -1)
    return torch.linalg.vector_norm(r, dim=1).double() / _norms(problem)


def noise_misfit(problem: InverseProblem) -> torch.Tensor:
    """The misfit a perfect image would have: ``sqrt(m * noise_var) / ||y||`` per row, ``(B,)`` float64.

    0 for noiseless data. A misfit far above it leaves data unexplained; far below it, the image fits noise.
    """
    nv = problem.noise_var.to(problem.y.device).double().reshape(problem.batch)
    return (measured_count(problem) * nv).sqrt() / _norms(problem)
