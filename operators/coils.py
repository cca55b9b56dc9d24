"""Coil sensitivities: ESPIRiT estimation, RSS / SENSE coil combination and simulated birdcage maps.

Everything here is pure torch and runs wherever its input tensors live (CPU or GPU). Centre
convention as in :mod:`operators.fft`: k-space DC sits at ``(H // 2, W // 2)``.

References:
    Uecker M, Lai P, Murphy MJ, Virtue P, Elad M, Pauly JM, Vasanawala SS, Lustig M.
    ESPIRiT - an eigenvalue approach to autocalibrating parallel MRI: where SENSE meets GRAPPA.
    Magn Reson Med 71:990-1001 (2014).
    Roemer PB, Edelstein WA, Hayes CE, Souza SP, Mueller OM. The NMR phased array.
    Magn Reson Med 16:192-225 (1990) (root-sum-of-squares combination).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "birdcage_maps",
    "calibration_region",
    "coil_support",
    "espirit_maps",
    "fully_sampled_center",
    "rss",
    "sense_combine",
]

CalibWidth = int | Sequence[int] | None

# Upper bound on the automatically chosen calibration size (calib_width=None): beyond ~24 lines
# the SVD grows without improving smooth coil maps (Uecker et al. 2014 use 24x24).
MAX_AUTO_CALIB = 24


# --------------------------------------------------------------------------- combination
def rss(coil_images: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares coil combination, ``sqrt(sum_c |x_c|^2)`` (fastMRI's ``rss``).

    Args:
        coil_images: real or complex coil images.
        dim: the coil dimension.

    Returns:
        Real tensor (float dtype matching the input precision).

    Shapes:
        coil_images: ``(..., C, H, W)`` (with the default ``dim=-3``) -> ``(..., H, W)``.
    """
    return coil_images.abs().square().sum(dim=dim).sqrt()


def sense_combine(coil_images: torch.Tensor, coil_maps: torch.Tensor) -> torch.Tensor:
    """SENSE (Roemer) combination ``sum_c conj(S_c) x_c / sum_c |S_c|^2``.

    This is the least-squares estimate of ``x`` from fully sampled ``x_c = S_c x``. Pixels where
    ``sum_c |S_c|^2`` is zero (or below ``eps`` times its per-image maximum, e.g. outside an
    ESPIRiT crop) are set to zero instead of dividing by (almost) zero.

    Args:
        coil_images: complex coil images.
        coil_maps: complex sensitivities, broadcastable against ``coil_images``.

    Returns:
        The combined complex image.

    Shapes:
        coil_images: ``(..., C, H, W)``; coil_maps: ``(..., C, H, W)`` or ``(C, H, W)``
        -> ``(..., H, W)``.
    """
    num = (coil_maps.conj() * coil_images).sum(dim=-3)
    den = coil_maps.abs().square().sum(dim=-3)
    eps = torch.finfo(den.dtype).eps
    floor = den.amax(dim=(-2, -1), keepdim=True) * eps
    valid = (den > floor) & (den > 0)
    return torch.where(valid, num / torch.where(valid, den, torch.ones_like(den)), torch.zeros_like(num))


# Relative coil-energy level below which a pixel counts as unobserved (see coil_support).
SUPPORT_LEVEL = 0.01


def coil_support(coil_maps: torch.Tensor, level: float = SUPPORT_LEVEL) -> torch.Tensor:
    """Pixels the coils see: ``sum_c |S_c|^2 >= level * max`` over each image.

    A multi-coil measurement ``y_c = M F (S_c x)`` carries no information about ``x`` where every
    ``S_c`` vanishes: there the data term of any reconstruction is flat, and whatever a prior puts
    there stays. ESPIRiT maps are unit-norm inside the region whose calibration eigenvalue passes
    the crop and exactly zero outside it (``espirit_maps``, ``crop``), so for them this rule
    returns that region for any ``level`` in ``(0, 1)``. Maps that cover the whole image (simulated
    birdcage maps, normalised to ``sum_c |S_c|^2 = 1``) give the whole image. The default ``level``
    of 1 % in energy (10 % in amplitude) also keeps the weak periphery of un-normalised maps.

    Args:
        coil_maps: complex sensitivities.
        level: relative energy threshold in ``(0, 1]``.

    Returns:
        Bool support.

    Shapes:
        coil_maps: ``(C, H, W)`` or ``(S, C, H, W)`` -> ``(H, W)`` or ``(S, H, W)``.
    """
    if not 0.0 < level <= 1.0:
        raise ValueError(f"coil_support: level must be in (0, 1], got {level}")
    energy = coil_maps.abs().square().sum(dim=-3)
    peak = energy.amax(dim=(-2, -1), keepdim=True)
    return (energy >= level * peak) & (peak > 0)


# --------------------------------------------------------------------------- simulation
def birdcage_maps(
    n_coils: int,
    shape: tuple[int, int],
    radius: float = 1.5,
    n_rings: int = 1,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Simulated birdcage coil sensitivities, normalised so that ``sum_c |S_c|^2 = 1``.

    Coils sit on ``n_rings`` rings of radius ``radius`` (in units of the half field of view) around
    the image; the rings are stacked along z, centred on the imaged plane ``z = 0``. Each map has
    a ``1 / distance`` (Biot-Savart-like) magnitude and a phase equal to the in-plane angle seen
    from the coil plus a per-coil offset, the same model as SigPy's ``sigpy.mri.birdcage_maps``
    (identical to it for ``n_rings=1``). Normalising by the root-sum-of-squares makes the SENSE
    operator's normal map the identity (``S^H S = I``), so ``rss(S * x) == |x|``.

    Args:
        n_coils: number of coils ``C`` (a multiple of ``n_rings``).
        shape: image shape ``(H, W)``.
        radius: ring radius relative to the half field of view (> 1 keeps coils outside the FOV).
        n_rings: number of coil rings along z.
        dtype: complex output dtype.
        device: output device.

    Returns:
        Complex coil maps.

    Shapes:
        returns: ``(C, H, W)``.
    """
    if n_coils < 1 or n_rings < 1 or n_coils % n_rings:
        raise ValueError(f"n_coils ({n_coils}) must be a positive multiple of n_rings ({n_rings})")
    h, w = int(shape[0]), int(shape[1])
    per_ring = n_coils // n_rings
    f64 = torch.float64
    c = torch.arange(n_coils, dtype=f64, device=device)
    j = c.remainder(per_ring)  # position on the ring
    ring = torch.div(c, per_ring, rounding_mode="floor")
    step = 2 * math.pi / per_ring
    coil_x = radius * torch.cos(j * step)
    coil_y = radius * torch.sin(j * step)
    coil_z = ring - 0.5 * (n_rings - 1)
    # Each ring is rotated by one coil's phase step so that rings differ (as in SigPy).
    coil_phase = -(j + ring) * step

    y = (torch.arange(h, dtype=f64, device=device) - h / 2.0) / (h / 2.0)
    x = (torch.arange(w, dtype=f64, device=device) - w / 2.0) / (w / 2.0)
    dx = x[None, None, :] - coil_x[:, None, None]
    dy = y[None, :, None] - coil_y[:, None, None]
    dz = -coil_z[:, None, None]
    dist = (dx.square() + dy.square() + dz.square()).sqrt().clamp_min(1e-12)
    phase = torch.atan2(dx, -dy) + coil_phase[:, None, None]
    maps = torch.polar(1.0 / dist, phase)
    maps = maps / rss(maps, dim=0)
    return maps.to(dtype)


# --------------------------------------------------------------------------- calibration
def _pair(width: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(width, int):
        return width, width
    a, b = (int(v) for v in width)
    return a, b


def _sampled(mask_or_kspace: torch.Tensor) -> torch.Tensor:
    """Boolean ``(H, W)``: sampled in every leading index (coil, slice)."""
    t = mask_or_kspace
    if t.dim() < 2:
        raise ValueError(
            "fully_sampled_center needs a 2-D mask or (..., C, H, W) k-space; broadcast a 1-D column "
            "mask first (operators.mri.as_mask_2d)"
        )
    s = t != 0
    return s.reshape(-1, *s.shape[-2:]).all(dim=0)


def _centre_run(line: torch.Tensor) -> int:
    """Largest ``w`` with ``line[n//2 - w//2 : n//2 - w//2 + w]`` all True.

    Windows of growing width are nested (they grow alternately left and right), so the first
    failing width ends the search.
    """
    n = line.shape[0]
    best = 0
    for width in range(1, n + 1):
        start = n // 2 - width // 2
        if not bool(line[start:start + width].all()):
            break
        best = width
    return best


def fully_sampled_center(mask_or_kspace: torch.Tensor) -> tuple[int, int]:
    """Measure the centred fully sampled block ``(ch, cw)`` of a mask or of k-space.

    The block is centred like :func:`calibration_region` (rows ``H//2 - ch//2 ...``). For k-space,
    a sample counts as acquired where it is non-zero in every coil (and slice). The runs along the
    central row and column are measured first, then the larger side is shrunk until the whole 2-D
    block is sampled (Poisson-disc masks have a square-ish, not a cross-shaped, centre).

    Args:
        mask_or_kspace: bool/real mask ``(H, W)`` or complex k-space ``(..., C, H, W)``.

    Returns:
        ``(ch, cw)``, possibly ``(0, 0)``.

    Shapes:
        mask_or_kspace: ``(..., H, W)``.
    """
    s = _sampled(mask_or_kspace).cpu()
    h, w = s.shape
    ch = _centre_run(s[:, w // 2])
    cw = _centre_run(s[h // 2, :])
    while ch > 0 and cw > 0:
        r0, c0 = h // 2 - ch // 2, w // 2 - cw // 2
        if bool(s[r0:r0 + ch, c0:c0 + cw].all()):
            return ch, cw
        if ch >= cw:
            ch -= 1
        else:
            cw -= 1
    return 0, 0


def calibration_region(kspace: torch.Tensor, calib_width: CalibWidth = 24) -> torch.Tensor:
    """Extract the centred calibration (ACS) block of k-space.

    Rows ``H//2 - ch//2 .. H//2 - ch//2 + ch`` (and likewise columns), so DC stays at the block's
    ``(ch//2, cw//2)``, the convention of :func:`operators.fft.fft2c` and SigPy's ``resize``.

    Args:
        kspace: centred multi-coil k-space.
        calib_width: ``int`` or ``(ch, cw)``; ``None`` picks the fully sampled centre measured by
            :func:`fully_sampled_center`, capped at 24.

    Returns:
        A view of the calibration block.

    Shapes:
        kspace: ``(..., C, H, W)`` -> ``(..., C, ch, cw)``.
    """
    h, w = kspace.shape[-2:]
    if calib_width is None:
        ch, cw = fully_sampled_center(kspace)
        ch, cw = min(ch, MAX_AUTO_CALIB), min(cw, MAX_AUTO_CALIB)
    else:
        ch, cw = _pair(calib_width)
    if not (0 < ch <= h and 0 < cw <= w):
        raise ValueError(f"calibration size ({ch}, {cw}) does not fit k-space of size ({h}, {w})")
    r0, c0 = h // 2 - ch // 2, w // 2 - cw // 2
    return kspace[..., r0:r0 + ch, c0:c0 + cw]


# --------------------------------------------------------------------------- ESPIRiT
def _signal_kernels(calib: torch.Tensor, kernel_width: int, threshold: float) -> torch.Tensor:
    """Rows of V_parallel: k-space kernels spanning the calibration matrix's row space.

    Shapes:
        calib: ``(C, ch, cw)`` -> ``(K, C, kw, kw)``.
    """
    n_coils = calib.shape[0]
    kw = kernel_width
    # Calibration (block-Hankel) matrix, Uecker et al. 2014 Fig. 1: one row per kw x kw patch,
    # all coils side by side.
    patches = calib.unfold(-2, kw, 1).unfold(-2, kw, 1)  # (C, nh, nw, kw, kw)
    mat = patches.reshape(n_coils, -1, kw * kw).transpose(0, 1).reshape(-1, n_coils * kw * kw)
    _, sing, vh = torch.linalg.svd(mat, full_matrices=False)
    # Eq. 9: keep the signal subspace, singular values above a fraction of the largest.
    keep = sing > threshold * sing.max()
    return vh[keep].reshape(-1, n_coils, kw, kw)


def _image_space_operator(kernels: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """The per-pixel ESPIRiT matrix ``G(r)`` of Uecker et al. 2014 (Eqs. 11-12).

    Projecting each k-space patch onto the signal subspace and averaging the kw^2 estimates of
    every sample is a shift-invariant k-space operator; in image space it is, at each pixel,
    ``G(r) = (1 / kw^2) sum_k g_k(r) g_k(r)^H`` with ``g_k`` the (unnormalised) inverse DFT of
    the zero-padded kernel ``k``. Equivalently its entries are the inverse DFT of the kernels'
    summed cross-correlations R_cc'[l] = sum_k sum_{d - d' = l} v_k[c, d] conj(v_k[c', d']),
    which only takes C^2 FFTs instead of one per kernel and coil. This equals SigPy's
    ``EspiritCalib`` (ortho-normalised iFFT times ``N / kw^2``) and puts the eigenvalue of
    consistent data at 1, so the crop threshold is meaningful.

    Shapes:
        kernels: ``(K, C, kw, kw)`` -> ``(C, C, H, W)``.
    """
    n_k, n_coils, kw, _ = kernels.shape
    h, w = shape
    flat = kernels.reshape(n_k, n_coils * kw * kw)
    proj = (flat.transpose(0, 1) @ flat.conj()).reshape(n_coils, kw, kw, n_coils, kw, kw)
    lag = 2 * kw - 1
    corr = kernels.new_zeros(n_coils, n_coils, lag, lag)
    for dy2 in range(kw):
        for dx2 in range(kw):
            # Lag (dy - dy2, dx - dx2) lives at index (dy - dy2 + kw - 1, ...).
            block = proj[:, :, :, :, dy2, dx2].permute(0, 3, 1, 2)  # (C, C', kw, kw) over (dy, dx)
            corr[:, :, kw - 1 - dy2:2 * kw - 1 - dy2, kw - 1 - dx2:2 * kw - 1 - dx2] += block
    # Place lag 0 at (H//2, W//2); wrap modulo the grid (the DFT is periodic anyway).
    offs = torch.arange(-(kw - 1), kw, device=kernels.device)
    rows, cols = (h // 2 + offs) % h, (w // 2 + offs) % w
    tmp = kernels.new_zeros(n_coils, n_coils, h, lag).index_add_(2, rows, corr)
    padded = kernels.new_zeros(n_coils, n_coils, h, w).index_add_(3, cols, tmp)
    padded = torch.fft.ifftshift(padded, dim=(-2, -1))
    # norm="forward" leaves the inverse transform unscaled: sum_l R[l] exp(+i 2 pi r l / N).
    gmat = torch.fft.ifft2(padded, dim=(-2, -1), norm="forward")
    return torch.fft.fftshift(gmat, dim=(-2, -1)) / (kw * kw)


def _power_iteration(gmat: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top eigenvector and eigenvalue of ``G(r)`` at every pixel at once (batched power method).

    Runs ``max_iter`` steps ``x <- G x / ||G x||`` from ``x = 1`` (as SigPy does); the eigenvalue is
    ``||G x||`` of the last step. Runs of ``2^s`` steps are applied as one product with ``G^(2^s)``
    (repeated squaring): the same iterate up to rounding, but far fewer passes over the pixels,
    since a batched C x C matrix product costs only a few matrix-vector products.

    Shapes:
        gmat: ``(C, C, H, W)`` -> vectors ``(C, H, W)`` (unit norm per pixel), values ``(H, W)``.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    n_coils, _, h, w = gmat.shape
    g = gmat.permute(2, 3, 0, 1).reshape(h * w, n_coils, n_coils)  # a batch of Hermitian C x C

    def unit(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Per-pixel 2-norm via the real view: complex abs() is several times slower on CPU.
        real = torch.view_as_real(v)
        norm = torch.linalg.vector_norm(real.reshape(real.shape[0], -1), dim=1)
        inv = torch.where(norm > 0, norm.reciprocal(), torch.zeros_like(norm))
        return torch.view_as_complex(real * inv[:, None, None, None]), norm

    n_sq = 0
    while n_sq < 4 and 8 * 2 ** (n_sq + 1) <= max_iter:
        n_sq += 1
    power = g
    for _ in range(n_sq):
        # Renormalise each square: only directions matter, and small eigenvalues would underflow.
        power, _ = unit(torch.bmm(power, power))
    n_big, n_small = divmod(max_iter - 1, 2 ** n_sq)
    vec = g.new_ones(h * w, n_coils, 1)
    for _ in range(n_big):
        vec, _ = unit(torch.bmm(power, vec))
    for _ in range(n_small + 1):  # the last plain step yields the eigenvalue estimate
        vec, val = unit(torch.bmm(g, vec))
    return vec.reshape(h, w, n_coils).permute(2, 0, 1), val.reshape(h, w)


def _espirit_slice(
    kspace: torch.Tensor, calib_width: CalibWidth, kernel_width: int, threshold: float, crop: float, max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    calib = calibration_region(kspace, calib_width)
    if min(calib.shape[-2:]) < kernel_width:
        raise ValueError(
            f"calibration region {tuple(calib.shape[-2:])} is smaller than kernel_width={kernel_width}"
        )
    kernels = _signal_kernels(calib, kernel_width, threshold)
    gmat = _image_space_operator(kernels, tuple(kspace.shape[-2:]))
    maps, eig = _power_iteration(gmat, max_iter)
    # The eigenvector is unique up to a per-pixel phase; referencing it to coil 0 gives maps that
    # vary smoothly in space (Uecker et al. 2014, Sec. "Phase").
    ref = maps[0]
    mag = ref.abs()
    rot = torch.where(mag > 0, ref.conj() / torch.where(mag > 0, mag, torch.ones_like(mag)), torch.ones_like(ref))
    maps = maps * rot
    # Sec. "Cropping": eigenvalue ~1 where the data support a sensitivity; elsewhere no signal.
    maps = maps * (eig > crop)
    return maps, eig


def espirit_maps(
    kspace: torch.Tensor,
    calib_width: CalibWidth = 24,
    kernel_width: int = 6,
    threshold: float = 0.02,
    crop: float = 0.95,
    max_iter: int = 100,
    *,
    return_eigenvalues: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """ESPIRiT coil sensitivities (Uecker et al., MRM 2014), first eigenvector set.

    Steps: calibration matrix of ``kernel_width x kernel_width`` patches of the centred
    calibration block; SVD, keeping right singular vectors above ``threshold`` times the largest
    singular value; the equivalent per-pixel image-space matrix at full size; batched power
    iteration for its top eigenvector/eigenvalue; phase referenced to coil 0; maps zeroed where the
    eigenvalue is ``<= crop``. Matches ``sigpy.mri.app.EspiritCalib`` conventions (and its output up
    to a per-pixel phase where coil 0 vanishes). Only the calibration region of ``kspace`` is read,
    so undersampled k-space is fine as long as that region is fully sampled.

    Args:
        kspace: centred complex k-space (DC at ``(H//2, W//2)``), one slice or a batch.
        calib_width: calibration size, ``int`` or ``(ch, cw)``; ``None`` measures the fully sampled
            centre (:func:`fully_sampled_center`, capped at 24).
        kernel_width: ESPIRiT kernel size.
        threshold: relative singular-value threshold for the signal subspace.
        crop: eigenvalue threshold below which maps are set to zero.
        max_iter: power-iteration steps.
        return_eigenvalues: also return the top eigenvalue map.

    Returns:
        Coil maps (and eigenvalues if requested), on ``kspace``'s device and dtype.

    Shapes:
        kspace: ``(C, H, W)`` or ``(S, C, H, W)`` -> maps of the same shape; eigenvalues
        ``(H, W)`` or ``(S, H, W)`` (real).
    """
    if not kspace.is_complex():
        raise TypeError(f"espirit_maps: expected complex k-space, got {kspace.dtype}")
    if kspace.dim() == 3:
        maps, eig = _espirit_slice(kspace, calib_width, kernel_width, threshold, crop, max_iter)
    elif kspace.dim() == 4:
        outs = [_espirit_slice(k, calib_width, kernel_width, threshold, crop, max_iter) for k in kspace]
        maps = torch.stack([m for m, _ in outs])
        eig = torch.stack([e for _, e in outs])
    else:
        raise ValueError(f"espirit_maps: expected (C, H, W) or (S, C, H, W), got {tuple(kspace.shape)}")
    return (maps, eig) if return_eigenvalues else maps
