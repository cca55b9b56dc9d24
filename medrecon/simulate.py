"""Simulated measurements from real images: multi-coil k-space and CT sinograms (array level).

The file-level commands (``medrecon simulate mri|ct``) wrap these. Every random draw takes a seed.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from operators import birdcage_maps, cartesian_mask, fft2c, hu_to_mu, transmission_noise
from operators.base import LinearOperator

__all__ = ["smooth_phase", "simulate_kspace", "simulate_sinogram"]


def smooth_phase(shape: tuple[int, int], seed: int, n: int = 1, max_rad: float = math.pi / 2) -> torch.Tensor:
    """Smooth synthetic phase maps ``(n, H, W)`` (radians): a seeded random quadratic surface.

    Real MR phase varies slowly across the field of view (B0 and receive-phase variations); a
    magnitude-only source therefore gets a low-order phase so the complex prior sees realistic data.
    """
    from medrecon.priors.data import smooth_random_phase

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
    mask = cartesian_mask(mask_kind, w, center_fraction, acceleration, seed=int(seed))
    target = coil_imgs.abs().pow(2).sum(1).sqrt().float()
    return {"kspace": (full * mask + 0.0).to(torch.complex64), "mask": mask, "target": target, "image": img,
            "maps": maps}


def simulate_sinogram(hu: torch.Tensor, A: LinearOperator, seed: int, photons: Optional[float] = None,
                      mu_water: float = 0.019) -> torch.Tensor:
    """Line integrals of attenuation ``A mu`` for HU images ``(S, H, W)``; Poisson noise if ``photons``."""
    sino = A(hu_to_mu(hu.float(), mu_water))
    if photons:
        sino = transmission_noise(sino, float(photons), torch.Generator(device=sino.device).manual_seed(int(seed)))
    return sino
