"""A measurement as read from any format: what ``recon`` reconstructs, and the helpers readers share.

Every measurement format's reader (:mod:`medrecon.io.formats`) returns a :class:`LoadedInput`; the
pipeline validates it once for all formats (:func:`medrecon.app.pipeline.check_measurement`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from medrecon.errors import InputError

__all__ = ["LoadedInput", "slice_range", "slab_affine", "positive", "text_or_none", "checked_true_maps",
           "from_kspace_volume"]


@dataclass
class LoadedInput:
    """A measurement file, read: MRI k-space or a CT sinogram, plus what writing the output needs."""

    modality: str
    data: np.ndarray
    mask: Optional[np.ndarray] = None
    recon_size: tuple = ()
    target: Optional[np.ndarray] = None
    geometry: Optional[dict] = None
    mu_water: float = 0.019
    photons: float = 0.0
    noise_std: Optional[float] = None
    affine: Optional[np.ndarray] = None
    space: Optional[str] = None
    maps: Optional[np.ndarray] = None
    true_maps: Optional[np.ndarray] = None  # (C, H, W): the coil maps a simulation used (`recon --maps true`)
    pixel_mm: Optional[float] = None  # finest in-plane pixel size of the image, when the file says
    # Non-Cartesian k-space (medrecon.io.noncartesian): data is then (S, C, M), mask None, recon_size (H, W).
    trajectory: Optional[np.ndarray] = None  # (M, 2) float32 radians per pixel in [-pi, pi]; col 0 along H
    dcf: Optional[np.ndarray] = None  # (M,) float32 density compensation the file gives, else None


def checked_true_maps(maps, kspace_shape: tuple, name: str) -> Optional[np.ndarray]:
    """A simulation's ``true_maps`` dataset ``(C, H, W)``, checked against the k-space ``(S, C, H, W)``."""
    if maps is None:
        return None
    maps = np.asarray(maps)
    if maps.shape != tuple(kspace_shape[1:]) or maps.dtype.kind != "c" or not np.isfinite(maps).all():
        raise InputError(f"{name}: 'true_maps' must be finite complex coil maps of shape {tuple(kspace_shape[1:])}, "
                         f"got {maps.dtype} {maps.shape}")
    return maps.astype(np.complex64)


def slice_range(spec: Optional[str], n: int) -> slice:
    if not spec:
        return slice(0, n)
    try:
        a, _, b = spec.partition(":")
        s = slice(int(a) if a else 0, int(b) if b else n)
    except ValueError:
        raise InputError(f"--slices must look like a:b, got {spec!r}") from None
    if not (0 <= (s.start or 0) < min(s.stop, n)):
        raise InputError(f"--slices {spec} selects nothing from {n} slices")
    return s


def positive(v) -> Optional[float]:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) and f > 0 else None


def text_or_none(v) -> Optional[str]:
    if isinstance(v, (bytes, np.bytes_)):
        v = v.decode()
    return str(v) if v else None


def slab_affine(affine: np.ndarray, first: int) -> np.ndarray:
    """Shift an index->world affine so index 0 is slice ``first``."""
    out = affine.copy()
    out[:3, 3] = affine[:3, 3] + affine[:3, 0] * first
    return out


def from_kspace_volume(v, slices: Optional[str], name: str) -> LoadedInput:
    """The :class:`LoadedInput` of a fastMRI-layout volume (:class:`medrecon.io.fastmri.FastMRIVolume`, from
    a fastMRI or ISMRMRD file), cut to the ``slices`` range ``a:b``."""
    s = slice_range(slices, v.kspace.shape[0])
    aff = v.extra.get("source_affine")
    noise = v.attrs.get("noise_std")
    return LoadedInput("mri", v.kspace[s], v.mask, tuple(v.recon_size),
                       None if v.target is None else v.target[s],
                       noise_std=None if noise is None else float(noise),
                       affine=None if aff is None else slab_affine(np.asarray(aff), s.start or 0),
                       space=text_or_none(v.extra.get("source_space")),
                       maps=None if v.maps is None else v.maps[s],
                       true_maps=checked_true_maps(v.extra.get("true_maps"), v.kspace.shape, name),
                       pixel_mm=min(v.pixel_mm) if v.pixel_mm else None)
