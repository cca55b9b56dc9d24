"""Build the samplers' inverse problems from raw MRI k-space and CT sinograms.

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

from medrecon.errors import InputError
from medrecon.sampling import InverseProblem
from operators import MultiCoilMRI, coil_support, espirit_maps, sense_combine
from operators.coils import fully_sampled_center
from operators.fft import ifft2c

__all__ = ["coil_maps_for", "estimate_kspace_noise", "mri_problem", "ct_problem", "calib_size", "calib_block",
           "espirit_kernel", "ESPIRIT_THRESHOLD", "ESPIRIT_CROP"]


# ESPIRiT settings of every reconstruction (docs/robustness.md, "Coil maps"; measured by
# benchmarks/espirit_settings.py). Threshold and crop are sigpy's EspiritCalib defaults: on the real in-vivo
# BART k-space they beat the looser 0.01 / 0.8 inside the head (29.14 vs 28.38 dB CG-SENSE); on simulated
# coils the looser values only score better where they keep the source image's noise floor.
ESPIRIT_THRESHOLD = 0.02
ESPIRIT_CROP = 0.95


def calib_size(mask_cols: torch.Tensor, cap: int = 24, rows: int = 48) -> tuple[int, int]:
    """Calibration block ``(rows, cols)`` from the fully sampled centre of a column mask ``(W,)``.

    A column mask samples every readout row, so the block can be taller than it is wide; more rows
    give ESPIRiT more kernel positions when few central columns are sampled.
    """
    w = mask_cols.shape[-1]
    c = w // 2
    n = 0
    while c - n - 1 >= 0 and c + n < w and bool(mask_cols[c - n - 1]) and bool(mask_cols[c + n]):
        n += 1
    width = 2 * n
    if width < 6:
        raise InputError(f"the sampling mask has only {width} fully sampled central lines; ESPIRiT coil maps "
                         "need at least 6 (use a mask with a larger centre fraction)")
    return rows, min(cap, width)


def calib_block(mask: torch.Tensor, cap: int = 24) -> tuple[int, int]:
    """Calibration block ``(rows, cols)`` of a 2-D sampling pattern ``(H, W)``: its fully sampled centre, capped."""
    rows, cols = fully_sampled_center(mask)
    if min(rows, cols) < 6:
        raise InputError(f"the sampling mask has a {rows}x{cols} fully sampled centre; ESPIRiT needs at least 6x6")
    return min(rows, cap), min(cols, cap)


def espirit_kernel(calib: tuple[int, int]) -> int:
    """ESPIRiT kernel width for a calibration block: the widest (up to 6, at least 3) that leaves at least
    9 kernel positions across the block's narrow side, ``narrow - 8``.

    With fewer positions the calibration matrix cannot separate signal from noise, and the maps vanish over
    parts of the object, where no reconstruction can put signal (benchmarks/espirit_settings.py): 6
    positions (fastMRI 8x at 256 columns: 10 lines, kernel 5, the rule before 2026-12-05) lost 0.4-0.7 % of
    the head, 7 (12 lines, kernel 6) 0.24 %, while 8 or more lost at most 0.03 %. Blocks of 14 lines and
    more keep sigpy's kernel 6.
    """
    return min(6, max(3, min(calib) - 8))


def coil_maps_for(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ESPIRiT maps per slice, the one rule of every reconstruction (recon, benchmark, batch).

    Shapes: kspace ``(S, C, H, W)``, mask ``(W,)`` columns or ``(H, W)`` -> ``(S, C, H, W)``.
    Calibration block from the mask (:func:`calib_size`, :func:`calib_block`), kernel from the block
    (:func:`espirit_kernel`), threshold :data:`ESPIRIT_THRESHOLD`, crop :data:`ESPIRIT_CROP`.
    """
    if mask.dim() == 1:
        rows, cols = calib_size(mask)
        calib = (min(rows, kspace.shape[-2]), cols)
    else:
        calib = calib_block(mask)
    return espirit_maps(kspace, calib_width=calib, kernel_width=espirit_kernel(calib),
                        threshold=ESPIRIT_THRESHOLD, crop=ESPIRIT_CROP)


def estimate_kspace_noise(kspace: torch.Tensor, mask_cols: torch.Tensor, edge: float = 0.04) -> torch.Tensor:
    """Noise variance ``E|n|^2`` per slice from the outermost readout samples of the sampled lines.

    Shapes: kspace ``(S, C, H, W)``, mask ``(W,)`` -> ``(S,)``. An upper bound when the image fills
    the readout field of view (then edge samples still carry some signal).
    """
    h = kspace.shape[-2]
    n = max(1, int(round(edge * h)))
    cols = mask_cols.bool()
    edges = torch.cat([kspace[..., :n, :], kspace[..., h - n:, :]], dim=-2)[..., cols]
    return edges.abs().pow(2).mean(dim=tuple(range(1, edges.dim())))


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


def ct_problem(prior, A, sinogram: torch.Tensor, mu_water: float = 0.019,
               photons: Optional[float] = None) -> InverseProblem:
    """The CT inverse problem: ``sinogram = A mu`` with ``mu = offset + gain x`` (x: prior space).

    Shapes: sinogram ``(S, n_angles, n_det)`` float.
    """
    rule = prior.rule
    s = sinogram.shape[0]
    dev = sinogram.device
    gain = torch.full((s, 1, 1), mu_water * rule.half_width / 1000.0, device=dev)
    offset = torch.full((s, 1, 1), mu_water * (1 + rule.center / 1000.0), device=dev)
    if photons:
        # Var[log(I0/N)] ~ 1/(I0 exp(-p)) for Poisson counts (delta method), averaged over rays.
        noise_var = (sinogram.exp() / float(photons)).mean(dim=(1, 2))
    else:
        noise_var = torch.zeros(s, device=dev)
    return InverseProblem(A, sinogram.float(), gain, offset, noise_var, False)
