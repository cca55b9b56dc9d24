"""The MRI acquisition model: Cartesian sampling (mask kind, acceleration, centre, seed), calibration, coil maps
and noise, each with one rule that recon, simulate, batch and the benchmark share (docs/design.md, section 3).

- :class:`CartesianSampling` validates its settings once (one-line :class:`~medrecon.errors.InputError`) and
  draws fastMRI-identical column masks (:func:`operators.cartesian_mask`).
- :func:`coil_maps_for` is the one ESPIRiT rule: calibration block from the mask, kernel from the block.
- :func:`estimate_kspace_noise` estimates the noise level when the file does not give it.
- :func:`simulate_kspace` is the forward model run on real images (simulate, benchmark, tests): smooth
  synthetic phase, coil sensitivities, unitary FFT, complex Gaussian noise, the sampling mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from medrecon.errors import InputError
from operators import birdcage_maps, espirit_maps, fft2c
from operators.coils import fully_sampled_center
from operators.masks import MASK_KINDS, cartesian_mask

__all__ = ["CartesianSampling", "coil_maps_for", "estimate_kspace_noise", "calib_size", "calib_block",
           "espirit_kernel", "ESPIRIT_THRESHOLD", "ESPIRIT_CROP", "MAX_ACCEL", "simulate_kspace", "smooth_phase",
           "smooth_random_phase"]

MAX_ACCEL = 1024


@dataclass(frozen=True)
class CartesianSampling:
    """fastMRI-style retrospective column undersampling.

    Attributes:
        kind: one of :data:`operators.masks.MASK_KINDS`.
        accel: nominal acceleration (1..:data:`MAX_ACCEL`).
        center_fraction: fraction of fully sampled central columns, in (0, 1].
        seed: the mask's seed (an int, or fastMRI's ``tuple(map(ord, filename))``); the seed policy is in
            docs/design.md ("Randomness").

    Raises:
        InputError: an unknown kind, or an acceleration or centre fraction out of range.
    """

    kind: str
    accel: int
    center_fraction: float
    seed: Union[int, tuple] = 0

    def __post_init__(self) -> None:
        if self.kind not in MASK_KINDS:
            raise InputError(f"--mask must be one of {', '.join(MASK_KINDS)}, got {self.kind!r}")
        if isinstance(self.accel, bool) or not isinstance(self.accel, (int, np.integer)) or \
                not 1 <= self.accel <= MAX_ACCEL:
            raise InputError(f"--accel must be a whole number between 1 and {MAX_ACCEL}, got {self.accel!r}")
        if not 0.0 < float(self.center_fraction) <= 1.0:
            raise InputError(f"--center-fraction must be in (0, 1], got {self.center_fraction!r}")

    def mask(self, width: int) -> np.ndarray:
        """The ``(width,)`` bool column mask, bit-identical to fastMRI's ``MaskFunc`` for the same seed.

        Raises:
            InputError: the settings cannot be met at this width (e.g. the centre alone exceeds 1/accel).
        """
        try:
            return cartesian_mask(self.kind, int(width), float(self.center_fraction), int(self.accel),
                                  seed=self.seed).numpy()
        except ValueError as exc:
            raise InputError(f"cannot draw a {self.kind} mask of {width} columns at {self.accel}x with centre "
                             f"fraction {self.center_fraction}: {exc}") from None


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


def smooth_random_phase(shape: tuple[int, int], generator: torch.Generator, device, max_rad: float = math.pi,
                        n: int = 1) -> torch.Tensor:
    """Smooth random phase maps ``(n, H, W)`` in radians: a random low-order 2-D polynomial."""
    h, w = shape
    yy = torch.linspace(-1, 1, h, device=device)[:, None]
    xx = torch.linspace(-1, 1, w, device=device)[None, :]
    basis = torch.stack([torch.ones(h, w, device=device), xx.expand(h, w), yy.expand(h, w),
                         (xx * yy), (xx ** 2).expand(h, w), (yy ** 2).expand(h, w)])
    coef = (torch.rand(n, basis.shape[0], generator=generator, device="cpu") * 2 - 1).to(device)
    coef[:, 0] *= math.pi  # global phase anywhere
    coef[:, 1:] *= max_rad / 2
    return torch.einsum("nk,khw->nhw", coef, basis)


def smooth_phase(shape: tuple[int, int], seed: int, n: int = 1, max_rad: float = math.pi / 2) -> torch.Tensor:
    """Smooth synthetic phase maps ``(n, H, W)`` (radians): a seeded random quadratic surface.

    Real MR phase varies slowly across the field of view (B0 and receive-phase variations); a
    magnitude-only source therefore gets a low-order phase so the complex prior sees realistic data.
    """
    g = torch.Generator().manual_seed(int(seed))
    return smooth_random_phase(shape, g, "cpu", max_rad=max_rad, n=n)


def simulate_kspace(image: torch.Tensor, n_coils: int, mask_kind: str, acceleration: int, center_fraction: float,
                    seed: int, noise_std: float = 0.0, maps: Optional[torch.Tensor] = None,
                    add_phase: bool = True) -> dict:
    """Multi-coil Cartesian k-space from magnitude (or complex) images at their own matrix size.

    Args:
        image: ``(S, H, W)`` real magnitude or complex images.
        n_coils: number of birdcage coils (ignored when ``maps`` is given).
        mask_kind, acceleration, center_fraction: fastMRI mask settings (columns = W).
        seed: seeds the mask, the phase and the noise.
        noise_std: complex noise standard deviation per k-space sample (``E|n|^2 = noise_std^2``).
        maps: optional coil maps ``(C, H, W)``.
        add_phase: give magnitude images a smooth synthetic phase.

    Returns:
        dict with ``kspace`` (S, C, H, W) complex64 (masked), ``mask`` (W,) bool, ``target`` (S, H, W)
        float32 RSS of the fully sampled coil images, ``image`` (S, H, W) complex64, ``maps``.
    """
    sampling = CartesianSampling(mask_kind, acceleration, center_fraction, int(seed))  # validates first
    s, h, w = image.shape
    img = image.to(torch.complex64)
    if add_phase and not image.is_complex():
        img = img * torch.polar(torch.ones(s, h, w), smooth_phase((h, w), seed, n=s))
    if maps is None:
        maps = birdcage_maps(n_coils, (h, w))
    coil_imgs = maps * img[:, None]
    full = fft2c(coil_imgs)
    if noise_std > 0:
        g = torch.Generator().manual_seed(int(seed) + 1)
        noise = torch.complex(torch.randn(full.shape, generator=g), torch.randn(full.shape, generator=g))
        full = full + noise * (noise_std / math.sqrt(2))
    mask = torch.from_numpy(sampling.mask(w))
    target = coil_imgs.abs().pow(2).sum(1).sqrt().float()
    return {"kspace": (full * mask + 0.0).to(torch.complex64), "mask": mask, "target": target, "image": img,
            "maps": maps}
