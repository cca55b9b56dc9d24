"""The non-Cartesian MRI acquisition model (issue 20): trajectories by name, calibration from the gridded k-space
centre, noise, and the simulation of radial and spiral k-space from real images.

The conventions are the operator layer's (docs/noncartesian.md): trajectories in radians per pixel in ``[-pi, pi]``,
column 0 along the image rows (H), column 1 along the columns (W); k-space ``(S, C, M)`` with the samples in the
trajectory's C order (spoke- or interleave-major); the NUFFT is scaled by ``1 / sqrt(H W)`` so that a Cartesian
trajectory reproduces the unitary FFT of the Cartesian path, and noise levels mean the same thing on both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from medrecon.errors import InputError
from operators import birdcage_maps, espirit_maps

__all__ = ["TRAJECTORIES", "NonCartesianSampling", "noncart_calib", "noncart_coil_maps", "estimate_noncart_noise",
           "simulate_noncartesian", "default_readout"]

#: The trajectory kinds ``simulate mri --trajectory`` draws.
TRAJECTORIES = ("radial", "golden-radial", "spiral")
MAX_SPOKES = 100_000


def default_readout(shape: tuple[int, int], kind: str = "radial", spokes: int = 1) -> int:
    """Samples per spoke or interleave when none are given.

    Radial: twice the matrix (readout oversampling 2, as scanners acquire radial spokes; the spokes set the
    undersampling). Spiral: the samples that make ``spokes`` interleaves reach Nyquist density over the disc,
    ``pi N^2 / (4 n)`` (:func:`operators.trajectories.spiral`); fewer (``--readout``) undersample it.
    """
    n = max(int(shape[0]), int(shape[1]))
    if kind == "spiral":
        return max(2, math.ceil(math.pi * n * n / (4 * max(1, int(spokes)))))
    return 2 * n


@dataclass(frozen=True)
class NonCartesianSampling:
    """A radial, golden-angle radial or spiral sampling, validated once (one-line InputError).

    Attributes:
        kind: one of :data:`TRAJECTORIES`.
        spokes: spokes (radial) or interleaves (spiral).
        readout: samples per spoke or interleave; None: :func:`default_readout` of the matrix.
    """

    kind: str
    spokes: int
    readout: Optional[int] = None

    def __post_init__(self) -> None:
        if self.kind not in TRAJECTORIES:
            raise InputError(f"unknown trajectory {self.kind!r}; choose from {', '.join(TRAJECTORIES)}")
        if isinstance(self.spokes, bool) or not isinstance(self.spokes, int) or not 1 <= self.spokes <= MAX_SPOKES:
            raise InputError(f"--spokes must be an integer between 1 and {MAX_SPOKES}, got {self.spokes!r}")
        if self.readout is not None and not 2 <= int(self.readout) <= 65536:
            raise InputError(f"the readout must have 2 to 65536 samples, got {self.readout}")

    def trajectory(self, shape: tuple[int, int]) -> np.ndarray:
        """The trajectory ``(spokes, readout, 2)`` float32 in radians per pixel for an ``(H, W)`` matrix."""
        from operators import trajectories as T

        n_ro = int(self.readout or default_readout(shape, self.kind, self.spokes))
        if self.kind == "radial":
            t = T.radial(self.spokes, n_ro)
        elif self.kind == "golden-radial":
            t = T.golden_radial(self.spokes, n_ro)
        else:
            t = T.spiral(self.spokes, n_ro)
        return np.asarray(t, dtype=np.float32)


def noncart_calib(trajectory: torch.Tensor, shape: tuple[int, int], cap: int = 24) -> int:
    """The side of the Cartesian calibration block that the trajectory samples densely enough for ESPIRiT.

    A centred disc of radius ``r`` (in Cartesian k-space pixels) is Nyquist-sampled when every Cartesian pixel of it
    holds at least one sample: it is found by gridding the sample count onto the Cartesian k-space grid and growing
    ``r`` while the disc has no empty pixel. Radial sampling with ``n`` spokes gives ``r ~ n / pi`` (the angular
    spacing reaches one pixel there). The block is the disc's inscribed square, even, at most ``cap`` and at least 8.

    Shapes: trajectory ``(M, 2)`` radians.
    """
    h, w = int(shape[0]), int(shape[1])
    t = trajectory.detach().reshape(-1, 2).cpu().double()
    ky = torch.round(t[:, 0] * h / (2 * math.pi)).long() + h // 2
    kx = torch.round(t[:, 1] * w / (2 * math.pi)).long() + w // 2
    ok = (ky >= 0) & (ky < h) & (kx >= 0) & (kx < w)
    hit = torch.zeros(h, w, dtype=torch.bool)
    hit[ky[ok], kx[ok]] = True
    yy = torch.arange(h).double()[:, None] - h // 2
    xx = torch.arange(w).double()[None, :] - w // 2
    rad = torch.sqrt(yy ** 2 + xx ** 2)
    r = 1
    while r < min(h, w) // 2 and bool(hit[rad <= r + 1].all()):
        r += 1
    side = int(2 * math.floor(r / math.sqrt(2)))
    return max(8, min(cap, side - side % 2, min(h, w) - (min(h, w) % 2)))


def _gridded_centre(A, kspace: torch.Tensor, calib: int, iters: int = 20) -> torch.Tensor:
    """Cartesian k-space ``(S, C, H, W)`` whose centred ``calib x calib`` block holds the coil images' k-space at the
    Cartesian points, interpolated from the samples inside the block; zero outside it (ESPIRiT reads only the block).

    The samples with ``|w| < pi calib / N`` on both axes are fitted, in the least-squares sense (CG), by a coarse
    ``calib x calib`` image over the same field of view (pixels ``N / calib`` times larger, so its NUFFT sees the
    points at ``w N / calib``, inside ``[-pi, pi]``); the coarse image's unitary FFT is then the block at the
    Cartesian points ``2 pi k / N``. A densely sampled centre makes the fit well posed; unlike density-compensated
    gridding, it leaves no kernel or density error in the block for ESPIRiT's shift-invariant model to absorb.
    """
    from operators.nufft import NUFFT
    from operators.fft import fft2c as _fft2c

    h, w = A.in_shape
    c = int(calib)
    t = A.trajectory.reshape(-1, 2).to(torch.float64)
    scale = torch.tensor([h / c, w / c], dtype=torch.float64, device=t.device)
    inside = (t.abs() * scale < math.pi).all(dim=1)
    small = NUFFT((t[inside] * scale).clamp(-math.pi, math.pi), (c, c))
    y = kspace[..., inside.to(kspace.device)]
    # The unitary NUFFT of the coarse grid is 1/c where the fine one is 1/sqrt(HW): samples of the same k-space
    # value differ by c / sqrt(HW).
    y = y * (c / math.sqrt(h * w))
    g = torch.zeros((*y.shape[:-1], c, c), dtype=y.dtype, device=y.device)
    r = small.adjoint(y)
    p = r.clone()
    rs = (r.abs() ** 2).sum(dim=(-2, -1), keepdim=True)
    for _ in range(int(iters)):  # CG on the normal equations, per slice and coil
        q = small.adjoint(small(p))
        alpha = rs / (p.conj() * q).real.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-30)
        g = g + alpha * p
        r = r - alpha * q
        rs_new = (r.abs() ** 2).sum(dim=(-2, -1), keepdim=True)
        p = r + (rs_new / rs.clamp_min(1e-30)) * p
        rs = rs_new
    block = _fft2c(g)  # (S, C, c, c) at k = -c/2 .. c/2 - 1, the block's Cartesian points
    full = torch.zeros((*y.shape[:-1], h, w), dtype=y.dtype, device=y.device)
    full[..., h // 2 - c // 2: h // 2 - c // 2 + c, w // 2 - c // 2: w // 2 - c // 2 + c] = block
    return full


def noncart_coil_maps(A, kspace: torch.Tensor, calib: Optional[int] = None) -> torch.Tensor:
    """ESPIRiT coil maps ``(S, C, H, W)`` from non-Cartesian k-space ``(S, C, M)``.

    The k-space centre is gridded onto the Cartesian grid (:func:`_gridded_centre`), and ESPIRiT (Uecker et al.
    2014) calibrates on its ``calib x calib`` block with the Cartesian path's kernel rule and threshold. ``A`` is
    the :class:`operators.nufft.NonCartesianMRI` of the data (its maps are not used: only its NUFFT and density
    compensation).
    """
    from medrecon.acquisition.mri import ESPIRIT_CROP, ESPIRIT_THRESHOLD, espirit_kernel

    c = int(calib or noncart_calib(A.trajectory, A.in_shape))
    centre = _gridded_centre(A, kspace, c)
    return espirit_maps(centre, calib_width=(c, c), kernel_width=espirit_kernel((c, c)), threshold=ESPIRIT_THRESHOLD,
                        crop=ESPIRIT_CROP)


def estimate_noncart_noise(kspace: torch.Tensor, trajectory: torch.Tensor, edge: float = 0.04) -> torch.Tensor:
    """Noise variance ``E|n|^2`` per slice from the outermost samples, ``|w| > (1 - edge) pi`` (the corners of a
    spoke's oversampled readout, where an image's k-space has decayed). An upper bound, as in the Cartesian rule
    (:func:`medrecon.acquisition.mri.estimate_kspace_noise`).

    Shapes: kspace ``(S, C, M)``, trajectory ``(M, 2)`` -> ``(S,)``.
    """
    t = trajectory.reshape(-1, 2).to(kspace.device)
    r = t.pow(2).sum(-1).sqrt()
    outer = r >= (1 - edge) * r.max()
    if int(outer.sum()) < 8:
        outer = r >= torch.quantile(r.float(), 1 - edge)
    return kspace[..., outer].abs().pow(2).mean(dim=(1, 2))


def simulate_noncartesian(image: torch.Tensor, n_coils: int, trajectory: np.ndarray, seed: int,
                          noise_std: float = 0.0, add_phase: bool = True) -> dict:
    """Multi-coil non-Cartesian k-space from real images: the Cartesian simulation's phase, coils and noise
    (:func:`medrecon.acquisition.mri.simulate_kspace`), with the NUFFT in place of the masked FFT.

    Args:
        image: ``(S, H, W)`` magnitude or complex images.
        n_coils: birdcage coils.
        trajectory: ``(..., 2)`` radians per pixel.
        seed: seeds the phase and the noise.
        noise_std: complex noise std per sample (``E|n|^2 = noise_std^2``), the unitary scale of the Cartesian path.

    Returns:
        dict with ``kspace`` ``(S, C, M)`` complex64, ``target`` ``(S, H, W)`` float32 (RSS of the coil images: the
        fastMRI reference), ``maps`` ``(C, H, W)``, ``trajectory`` ``(M, 2)`` float32.
    """
    from medrecon.acquisition.mri import smooth_phase
    from operators.nufft import NonCartesianMRI

    s, h, w = image.shape
    img = image.to(torch.complex64)
    if add_phase and not image.is_complex():
        img = img * torch.polar(torch.ones(s, h, w), smooth_phase((h, w), seed, n=s))
    maps = birdcage_maps(n_coils, (h, w))
    traj = torch.as_tensor(np.asarray(trajectory, dtype=np.float32)).reshape(-1, 2)
    A = NonCartesianMRI(maps, traj)
    k = A(img)
    if noise_std > 0:
        g = torch.Generator().manual_seed(int(seed) + 1)
        noise = torch.complex(torch.randn(k.shape, generator=g), torch.randn(k.shape, generator=g))
        k = k + noise * (noise_std / math.sqrt(2))
    target = (maps * img[:, None]).abs().pow(2).sum(1).sqrt().float()
    return {"kspace": k.to(torch.complex64), "target": target, "maps": maps, "trajectory": traj.numpy()}
