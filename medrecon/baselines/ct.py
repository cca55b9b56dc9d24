"""Classical CT reconstructions: filtered backprojection and TV-regularised iterative reconstruction.

Both work with :class:`operators.ct.ParallelBeamCT` and :class:`operators.ct.FanBeamCT` (real images
``(..., H, W)`` of linear attenuation, sinograms ``(..., n_angles, n_detectors)``), batched over
leading dims, on the device of their inputs.

References:
    Kak AC, Slaney M. Principles of Computerized Tomographic Imaging. IEEE Press (1988), ch. 3 (FBP).
    Sidky EY, Pan X. Image reconstruction in circular cone-beam computed tomography by constrained,
    total-variation minimization. Phys Med Biol 53:4777-4807 (2008) (TV for sparse-view CT).
    Chambolle A, Pock T. A first-order primal-dual algorithm for convex problems with applications
    to imaging. J Math Imaging Vis 40:120-145 (2011).
    Pock T, Chambolle A. Diagonal preconditioning for first order primal-dual algorithms in convex
    optimization. ICCV (2011).
"""

from __future__ import annotations

import torch

from operators.base import LinearOperator

from .mri import _tv_least_squares

__all__ = ["fbp", "tv_iterative"]


def fbp(A: LinearOperator, sinogram: torch.Tensor, filter: str = "ramp") -> torch.Tensor:
    """Filtered backprojection: a thin wrapper over ``A.fbp`` (the operator's approximate inverse).

    Args:
        A: a CT operator with an ``fbp`` method (``ParallelBeamCT`` or ``FanBeamCT``).
        sinogram: line integrals.
        filter: ``"ramp"``, ``"shepp-logan"`` or ``"hann"``.

    Returns:
        The reconstructed attenuation image.

    Shapes:
        sinogram: ``(..., n_angles, n_detectors)`` -> returns ``(..., H, W)`` real.
    """
    if not hasattr(A, "fbp"):
        raise TypeError(f"{type(A).__name__} has no fbp() method")
    return A.fbp(sinogram, filter=filter)


def tv_iterative(A: LinearOperator, sinogram: torch.Tensor, lam: float, iters: int = 100, nonneg: bool = True,
                 x0: torch.Tensor | None = None, *, isotropic: bool = True, boundary: str = "neumann",
                 progress: bool = False, z_lam: float = 0.0) -> torch.Tensor:
    """TV-regularised least squares, ``min 0.5||Ax - y||^2 + lam TV(x)`` (``+ x >= 0`` if ``nonneg``).

    Chambolle-Pock primal-dual iterations (Chambolle & Pock 2011, Algorithm 1) on ``K = [A; grad]``
    with diagonal preconditioning (Pock & Chambolle 2011): the projector's entries are
    non-negative, so the row and column sums of ``|A|`` are ``A 1`` and ``A^T 1`` and per-pixel /
    per-ray step sizes follow without a power method; this converges in ~100 iterations on
    128x128 images with 30-60 views, where scalar steps (``1/||A||``) need several hundred.
    Isotropic TV with forward differences and Neumann boundaries (no jump across the image border)
    by default.

    Args:
        A: CT projector (entrywise non-negative, e.g. ``ParallelBeamCT`` / ``FanBeamCT``).
        sinogram: measured line integrals.
        lam: TV weight in sinogram-squared units per image unit (for attenuation in 1/mm and
            1 mm pixels, ~0.003-0.03 works for 30-60 views).
        iters: primal-dual iterations.
        nonneg: enforce ``x >= 0`` (attenuation is non-negative).
        x0: start image (e.g. FBP); default zeros.
        isotropic: isotropic (default) or anisotropic TV.
        boundary: ``"neumann"`` (default) or ``"periodic"`` differences.
        progress: show a progress bar over the iterations.
        z_lam: volume mode: TV along the slices (rows of ``sinogram``) with this weight; 0: slice by slice.

    Returns:
        The reconstructed attenuation image.

    Shapes:
        sinogram: ``(..., n_angles, n_detectors)``; x0: ``(..., H, W)`` -> returns ``(..., H, W)`` real.
    """
    if sinogram.is_complex():
        raise TypeError("tv_iterative: expected a real sinogram")
    return _tv_least_squares(A, sinogram, lam, iters, nonneg=nonneg, isotropic=isotropic, boundary=boundary,
                             x0=x0, power_iters=0, diagonal=True, progress="tv" if progress else None, z_lam=z_lam)
