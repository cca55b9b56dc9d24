"""Simulated measurements from real images: multi-coil k-space and CT sinograms (array level).

The file-level commands (``medrecon simulate mri|ct``) wrap these. Every random draw takes a seed.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from medrecon.acquisition.mri import CartesianSampling
from operators import birdcage_maps, fft2c, hu_to_mu, transmission_noise
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


def simulate_sinogram(hu: torch.Tensor, A: LinearOperator, seed: int, photons: Optional[float] = None,
                      mu_water: float = 0.019) -> torch.Tensor:
    """Line integrals of attenuation ``A mu`` for HU images ``(S, H, W)``; Poisson noise if ``photons``."""
    sino = A(hu_to_mu(hu.float(), mu_water))
    if photons:
        sino = transmission_noise(sino, float(photons), torch.Generator(device=sino.device).manual_seed(int(seed)))
    return sino


def _volume_slices(image_path, slices: Optional[str], modality: Optional[str]):
    from medrecon.io.volumes import load_volume
    from medrecon.io.measurement import slab_affine as _slab_affine, slice_range as _slice_range

    vol = load_volume(image_path, modality=modality)
    s = _slice_range(slices, vol.data.shape[0])
    idx = np.arange(vol.data.shape[0])[s]
    return vol, vol.data[s].astype(np.float32), idx, _slab_affine(np.asarray(vol.affine), int(idx[0]))


def simulate_mri_file(image, out, slices: Optional[str] = None, mask: str = "random", accel: int = 4,
                      center_fraction: float = 0.08, coils: int = 8, noise_std: float = 0.0, seed: int = 0) -> dict:
    """``medrecon simulate mri``: fastMRI-layout k-space h5 from a real image, at its own matrix size.

    Magnitudes are normalized by the volume's 99th percentile; ``noise_std`` is relative to that
    scale and in k-space units (the FFT is unitary, so it is also the image-domain noise level).
    """
    from pathlib import Path

    from medrecon.io.fastmri import write_fastmri_kspace

    vol, data, idx, affine = _volume_slices(image, slices, None)
    if vol.kind == "hu":
        from medrecon.errors import InputError

        raise InputError(f"{Path(image).name} is a CT volume; simulate ct instead")
    data = data / max(float(np.percentile(np.abs(data), 99)), 1e-8)
    sim = simulate_kspace(torch.from_numpy(data), coils, mask, accel, center_fraction, seed, noise_std)
    h, w = data.shape[-2:]
    write_fastmri_kspace(out, sim["kspace"].numpy(), target=sim["target"].numpy(), mask=sim["mask"].numpy(),
                         recon_size=(h, w),
                         attrs={"acceleration": accel, "center_fraction": center_fraction, "mask_kind": mask,
                                "seed": seed, "noise_std": float(noise_std), "acquisition": "simulated"},
                         extra={"source_affine": affine, "slice_indices": idx,
                                "source_space": np.bytes_(vol.space or ""),
                                # the coil maps of the simulation, for `recon --maps true` (not read otherwise)
                                "true_maps": sim["maps"].numpy().astype(np.complex64)})
    return {"slices": len(idx), "shape": [h, w], "acceleration": round(float(sim["mask"].numel() / sim["mask"].sum()), 2)}


def simulate_ct_file(image, out, views: int = 60, geometry: str = "parallel", photons: Optional[float] = None,
                     seed: int = 0, slices: Optional[str] = None, mu_water: float = 0.019,
                     size: Optional[int] = None) -> dict:
    """``medrecon simulate ct``: a sinogram h5 from a HU image (NIfTI, DICOM file or series folder).

    ``size`` optionally resamples slices to ``size x size`` (pixel size scaled to keep the field of view).
    """
    from operators import FanBeamCT, ParallelBeamCT

    from medrecon.io.sinogram import write_sinogram

    vol, hu, idx, affine = _volume_slices(image, slices, "CT")
    pix = float(vol.spacing[1]) if vol.spacing is not None else 1.0
    t = torch.from_numpy(hu)
    if size and (t.shape[-1] != size or t.shape[-2] != size):
        h, w = t.shape[-2:]
        pix = pix * max(h, w) / size
        t = torch.nn.functional.interpolate(t[:, None], size=(size, size), mode="bilinear", antialias=True)[:, 0]
        affine = affine.copy()
        affine[:3, 1:3] *= max(h, w) / size
    shape = tuple(t.shape[-2:])
    if geometry == "parallel":
        A = ParallelBeamCT(shape, views, pixel_size=pix, detector_spacing=pix)
    else:
        n_det = int(1.5 * max(shape))
        A = FanBeamCT(shape, views, source_distance=4 * pix * max(shape), detector_distance=6 * pix * max(shape),
                      n_detectors=n_det, detector_spacing=pix * 1.5, pixel_size=pix)
    sino = simulate_sinogram(t, A, seed, photons, mu_water)
    write_sinogram(out, sino.numpy(), A.geometry(), mu_water, photons or 0.0, seed, target_hu=t.numpy(),
                   extra={"source_affine": affine, "slice_indices": idx},
                   attrs={"source_space": vol.space or "", "views": views})
    return {"slices": len(idx), "shape": list(shape), "views": views, "pixel_mm": pix}
