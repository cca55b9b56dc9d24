"""Build the samplers' inverse problems from raw MRI k-space and CT sinograms.

The acquisition rules (calibration block, ESPIRiT maps, noise estimate) live in
:mod:`medrecon.acquisition.mri` and are re-exported here.

MRI: ESPIRiT coil maps from the calibration region, the multi-coil operator with the acquisition
mask, the prior's per-slice scale from the zero-filled SENSE-combined image, and the k-space noise
variance (given, or estimated from the readout edges of the sampled lines, where oversampled
k-space holds almost no signal).
CT: the projector rebuilt from the file's geometry; line integrals of attenuation
``mu = mu_water (1 + HU/1000)``; noise variance from the photon count when the data is low-dose.
"""

from __future__ import annotations

from typing import Optional

import torch

from medrecon.acquisition.mri import (ESPIRIT_CROP, ESPIRIT_THRESHOLD, calib_block, calib_size, coil_maps_for,
                                      espirit_kernel, estimate_kspace_noise)
from medrecon.sampling import InverseProblem
from operators import MultiCoilMRI, coil_support, sense_combine
from operators.fft import ifft2c

__all__ = ["coil_maps_for", "estimate_kspace_noise", "mri_problem", "noncart_problem", "ct_problem", "ct_noise_var", "ct_measurement",
           "calib_size", "calib_block", "espirit_kernel", "ESPIRIT_THRESHOLD", "ESPIRIT_CROP"]


def mri_problem(prior, kspace: torch.Tensor, mask_cols: torch.Tensor, maps: Optional[torch.Tensor] = None,
                noise_var: Optional[torch.Tensor] = None, support: bool = True) -> tuple[InverseProblem, torch.Tensor]:
    """The MRI inverse problem for S slices.

    With ``support`` (the default) the image is restricted to the pixels the coils see
    (:func:`operators.coils.coil_support`): where every map vanishes, as outside an ESPIRiT crop, the
    k-space says nothing and a sampler would keep the prior's guess (docs/robustness.md measures it).

    Args:
        prior: MRI prior (for its normalization rule).
        kspace: masked k-space ``(S, C, H, W)`` complex.
        mask_cols: ``(W,)`` bool column mask (or ``(H, W)``).
        maps: coil maps ``(S, C, H, W)``; ESPIRiT when None.
        noise_var: ``(S,)`` noise variance; estimated when None.
        support: restrict the image to the coil maps' support.

    Returns:
        ``(problem, maps)``.
    """
    if maps is None:
        maps = coil_maps_for(kspace, mask_cols)
    A = MultiCoilMRI(maps, mask_cols.to(kspace.device))
    y = kspace * A.mask + 0.0
    zf = sense_combine(ifft2c(y), maps)
    scale = prior.scale_of(zf).reshape(-1, 1, 1).to(torch.float32)
    if noise_var is None:
        m = mask_cols if mask_cols.dim() == 1 else mask_cols.any(0)
        noise_var = estimate_kspace_noise(y, m)
    zero = torch.zeros_like(scale)
    sup = coil_support(maps) if support else None
    return InverseProblem(A, y, scale, zero, noise_var.float().to(y.device), True, support=sup), maps


def noncart_problem(prior, A, kspace: torch.Tensor, noise_var: Optional[torch.Tensor] = None,
                    support: bool = True) -> InverseProblem:
    """The non-Cartesian MRI inverse problem for S slices (issue 20): :func:`mri_problem` with the NUFFT SENSE
    operator. The prior's scale is read from the SENSE-combined gridded image (density-compensated adjoint, the
    counterpart of the zero-filled image), the noise from the outermost samples when not given.

    Args:
        prior: MRI prior (for its normalization rule).
        A: :class:`operators.nufft.NonCartesianMRI` with the slices' coil maps ``(S, C, H, W)`` and a density
            compensation.
        kspace: ``(S, C, M)`` complex.
        noise_var: ``(S,)`` or None.
        support: restrict the image to the coil maps' support.
    """
    from medrecon.acquisition.noncart import estimate_noncart_noise

    zf = sense_combine(A.gridding(kspace), A.coil_maps)
    scale = prior.scale_of(zf).reshape(-1, 1, 1).to(torch.float32)
    if noise_var is None:
        noise_var = estimate_noncart_noise(kspace, A.trajectory)
    zero = torch.zeros_like(scale)
    sup = coil_support(A.coil_maps) if support else None
    return InverseProblem(A, kspace, scale, zero, noise_var.float().to(kspace.device), True, support=sup)


#: The CT data terms: unweighted least squares on the line integrals, penalized weighted least squares, or the
#: pre-log Poisson likelihood (relinearized at every step: the fast and Langevin samplers only).
CT_DATA_TERMS = ("ls", "pwls", "poisson")
#: The learned methods that take ``poisson``: their data step is a CG solve, which the linearization feeds.
POISSON_METHODS = ("fast", "langevin")


def ct_problem(prior, A, sinogram: torch.Tensor, mu_water: float = 0.019,
               photons: Optional[float] = None, data_term: str = "ls", electronic_std: float = 0.0) -> InverseProblem:
    """The CT inverse problem: ``sinogram = A mu`` with ``mu = offset + gain x`` (x: prior space).

    ``data_term="pwls"`` weights each ray by the inverse variance of its line integral (:func:`ct_system`),
    which needs the scan's photon count.

    Shapes: sinogram ``(S, n_angles, n_det)`` float.
    """
    rule = prior.rule
    s = sinogram.shape[0]
    dev = sinogram.device
    gain = torch.full((s, 1, 1), mu_water * rule.half_width / 1000.0, device=dev)
    offset = torch.full((s, 1, 1), mu_water * (1 + rule.center / 1000.0), device=dev)
    Aw, yw, noise_var = ct_system(A, sinogram.float(), photons, "pwls" if data_term == "poisson" else data_term,
                                  electronic_std)
    relin = PoissonLinearization(A, sinogram.float(), float(photons), electronic_std) if data_term == "poisson" else None
    return InverseProblem(Aw, yw, gain, offset, noise_var, False, linearize=relin)


class PoissonLinearization:
    """The pre-log Poisson likelihood of the counts, as the weighted least squares that matches it at an estimate.

    Counts ``N_i ~ Poisson(I0 exp(-l_i))`` (``l = A mu``; with electronic noise, the shifted-Poisson model of
    :mod:`medrecon.recon.poisson`). Around the line integrals ``l0 = A mu0`` of the current estimate, with
    ``ybar_i = I0 exp(-l0_i) + sigma^2`` and the curvature ``c_i = max(ybar_i, N'_i)``,

        h_i(l) ~ c_i / 2 (l - z_i)^2 + const,      z_i = l0_i - (N'_i - ybar_i) / c_i,

    a weighted least squares whose gradient at ``l0`` is the exact one, ``N'_i - ybar_i``. ``h''(l) = ybar(l)`` falls
    with ``l``, so the Fisher curvature at the estimate alone (``c = ybar``) is too small wherever the estimate
    attenuates more than the data say (``N > ybar``): the step ``(N - ybar) / ybar`` then overshoots by several units
    of ``l`` (measured: bright streaks of 3600 HU at 2e3 photons). The larger of the curvatures at the two ends, the
    estimate's and the data's, keeps the step within the region where the parabola lies above ``h``. A sampler that
    calls it at every step (``InverseProblem.linearized``) takes a damped Newton step of the exact likelihood inside
    its usual CG data consistency, whose fixed point is the pre-log maximum. There ``ybar = N`` and the weights are
    the counts, PWLS's weights (Sauer & Bouman 1993 derive PWLS as this expansion around the data); the two differ in
    how they combine the rays away from it and where counts are at or near zero, which the log clamps.

    The expansion point ``l0`` is the estimate's line integral kept within one unit of the data's, ``log(I0 /
    max(N, 1))``, and at or above 0: a trust region where the parabola stays close to ``h`` (``h''`` changes by a
    factor ``e`` per unit). Expanding at a rough early estimate instead gave steps that the next estimate could not
    correct (a band of +-1000 HU along the longest rays, 15 dB at 2e3 photons). Weights are normalized to mean 1 per row (as :func:`ct_system`); the noise variance is
    ``1 / mean(c)``. The counts are taken as ``I0 exp(-l)`` of the post-log sinogram (``max(N, 1)`` of the file's
    counts, which is what the log kept).

    Shapes: sinogram ``(S, views, detectors)``; :meth:`__call__` takes physical images ``(B, H, W)``, ``B`` the rows.
    """

    def __init__(self, A, sinogram: Optional[torch.Tensor], photons: float, electronic_std: float = 0.0,
                 counts: Optional[torch.Tensor] = None) -> None:
        if not photons or photons <= 0:
            raise ValueError(f"the Poisson likelihood needs the scan's photon count I0 > 0, got {photons}")
        self.A, self.photons, self.s2 = A, float(photons), float(electronic_std) ** 2
        self.counts = float(photons) * torch.exp(-sinogram.double()) if counts is None else counts
        self.data_l = torch.log(self.photons / self.counts.clamp_min(1.0))  # the data's line integrals, once

    def repeat(self, k: int) -> "PoissonLinearization":
        return PoissonLinearization(self.A.batch_repeat(k), None, self.photons, self.s2 ** 0.5,
                                    self.counts.repeat_interleave(k, dim=0))

    def select(self, idx: slice) -> "PoissonLinearization":
        return PoissonLinearization(self.A.batch_select(idx), None, self.photons, self.s2 ** 0.5, self.counts[idx])

    def __call__(self, p: torch.Tensor) -> tuple:
        """``(A', y', noise_var)`` of the expansion at the physical images ``p`` ``(B, H, W)``."""
        from operators import RowWeighted

        # the expansion point: the estimate's line integrals, within one unit of the data's (a trust region where the
        # parabola is close to h: h'' = ybar changes by a factor e per unit of l)
        data_l = self.data_l.to(p.device)
        l0 = torch.minimum(torch.maximum(self.A(p.float()).double(), data_l - 1), data_l + 1).clamp_min(0)
        ybar = self.photons * torch.exp(-l0) + self.s2
        n = (self.counts.to(p.device) + self.s2).clamp_min(0)
        c = torch.maximum(ybar, n)
        z = l0 - (n - ybar) / c
        wbar = c.mean(dim=(-2, -1), keepdim=True)
        root = (c / wbar).sqrt().float()
        return RowWeighted(self.A, root, check=False), root * z.float(), (1.0 / wbar).flatten().float()


def ct_weights(sinogram: torch.Tensor, photons: float, electronic_std: float = 0.0) -> torch.Tensor:
    """PWLS statistical weights ``w_i = 1 / Var[l_i]`` of post-log line integrals ``l_i = log(I0 / N_i)``.

    With counts ``N_i ~ Poisson(I0 exp(-p_i)) + N(0, sigma_e^2)`` the delta method gives
    ``Var[l_i] ~ (N_i + sigma_e^2) / N_i^2`` (Sauer & Bouman 1993; Thibault et al. 2006 for the electronic
    term), evaluated at the measured counts ``N_i = I0 exp(-l_i)``, which the log-sinogram determines exactly
    (``operators.transmission_noise`` clamps ``N_i >= 1``, so does this).

    Shapes: sinogram ``(S, n_angles, n_det)`` -> ``(S, n_angles, n_det)``.
    """
    if not photons or photons <= 0:
        raise ValueError(f"PWLS weights need the scan's photon count I0 > 0, got {photons}")
    counts = (float(photons) * torch.exp(-sinogram.double())).clamp_min(1.0)
    return (counts.square() / (counts + float(electronic_std) ** 2)).to(sinogram.dtype)


def ct_system(A, sinogram: torch.Tensor, photons: Optional[float], data_term: str = "ls",
              electronic_std: float = 0.0) -> tuple:
    """``(A', y', noise_var)`` of the CT data term, all in line-integral units.

    - ``ls``: ``(A, y, ct_noise_var(y))``: ``||A mu - y||^2`` with one noise level per slice.
    - ``pwls``: ``(W^(1/2) A, W^(1/2) y, 1 / mean(w))`` with ``W = w / mean(w)`` per slice (:func:`ct_weights`):
      ``||A' mu - y'||^2`` is the weighted least squares, and the whitened noise has the one variance
      ``1 / mean(w)``. Normalizing by the mean keeps the data term on the scale of ``ls``, so a TV weight or a
      sampler setting means about the same under both.

    Raises:
        ValueError: an unknown data term, or ``pwls`` without a photon count.
    """
    if data_term not in CT_DATA_TERMS:
        raise ValueError(f"data term must be one of {', '.join(CT_DATA_TERMS)}, got {data_term!r}")
    if data_term == "ls":
        return A, sinogram, ct_noise_var(sinogram, photons)
    from operators import RowWeighted

    w = ct_weights(sinogram, photons, electronic_std)
    wbar = w.mean(dim=(1, 2), keepdim=True)
    root = (w / wbar).sqrt()
    return RowWeighted(A, root), root * sinogram, (1.0 / wbar).flatten().float()


def ct_noise_var(sinogram: torch.Tensor, photons: float | None) -> torch.Tensor:
    """Noise variance of the line integrals per slice, ``(S,)``: 0 without a photon count (noiseless)."""
    if photons:
        # Var[log(I0/N)] ~ 1/(I0 exp(-p)) for Poisson counts (delta method), averaged over rays.
        return (sinogram.exp() / float(photons)).mean(dim=(1, 2))
    return torch.zeros(sinogram.shape[0], device=sinogram.device)


def ct_measurement(A, sinogram: torch.Tensor, photons: float | None = None) -> InverseProblem:
    """The CT measurement as an :class:`InverseProblem` on attenuation itself (gain 1, offset 0, no prior), for
    the data misfit of a classical reconstruction. Shapes: sinogram ``(S, n_angles, n_det)``."""
    s = sinogram.shape[0]
    one = torch.ones((s, 1, 1), device=sinogram.device)
    return InverseProblem(A, sinogram.float(), one, torch.zeros_like(one), ct_noise_var(sinogram, photons), False)
