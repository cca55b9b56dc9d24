"""CT sinogram files (HDF5): measurements plus everything needed to rebuild the projector.

Layout: dataset ``sinogram`` float32 ``(slices, views, detectors)`` (line integrals of attenuation,
dimensionless), ``angles`` float64 ``(views,)`` radians, optional ``target_hu`` float32
``(slices, H, W)`` and ``source_affine`` ``(4, 4)``/``slice_indices``; attributes ``geometry`` (JSON of
the projector's ``geometry()``), ``mu_water`` (/mm), ``photons`` (0 = noiseless), ``seed``,
``source_space`` and ``source_name`` (a file name, never a patient identifier).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_write

__all__ = ["SinogramFile", "read_sinogram", "write_sinogram", "projector_from_geometry"]


@dataclass
class SinogramFile:
    """Contents of a sinogram file. Shapes: sinogram ``(S, V, D)``, target_hu ``(S, H, W)``."""

    sinogram: np.ndarray
    geometry: dict
    mu_water: float = 0.019
    photons: float = 0.0
    target_hu: Optional[np.ndarray] = None
    extra: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)


def projector_from_geometry(geometry: dict):
    """Rebuild the CT operator stored with a sinogram."""
    from operators import FanBeamCT, ParallelBeamCT

    kind = geometry.get("type")
    if kind == "parallel":
        return ParallelBeamCT.from_geometry(geometry)
    if kind == "fan":
        return FanBeamCT.from_geometry(geometry)
    raise InputError(f"unknown CT geometry type {kind!r}; expected 'parallel' or 'fan'")


def write_sinogram(path, sinogram: np.ndarray, geometry: dict, mu_water: float, photons: float, seed: int,
                   target_hu: Optional[np.ndarray] = None, extra: Optional[dict] = None,
                   attrs: Optional[dict] = None) -> Path:
    """Write a sinogram file atomically (see the module docstring for the layout)."""
    sinogram = np.asarray(sinogram, dtype=np.float32)
    if sinogram.ndim != 3:
        raise InputError(f"sinogram must be (slices, views, detectors), got shape {sinogram.shape}")
    with atomic_write(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("sinogram", data=sinogram)
            f.create_dataset("angles", data=np.asarray(geometry["angles"], dtype=np.float64))
            if target_hu is not None:
                f.create_dataset("target_hu", data=np.asarray(target_hu, dtype=np.float32))
            for k, v in (extra or {}).items():
                f.create_dataset(k, data=np.asarray(v))
            f.attrs["geometry"] = json.dumps(geometry)
            f.attrs["mu_water"] = float(mu_water)
            f.attrs["photons"] = float(photons or 0.0)
            f.attrs["seed"] = int(seed)
            f.attrs["format"] = "medrecon-sinogram/1"
            for k, v in (attrs or {}).items():
                f.attrs[k] = v
    return Path(path)


def read_sinogram(path) -> SinogramFile:
    """Read a sinogram file, checking the layout before reading arrays."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path.name}: no such file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path.name} is not an HDF5 sinogram file")
    try:
        with h5py.File(path, "r") as f:
            if "sinogram" not in f or "geometry" not in f.attrs:
                raise InputError(f"{path.name} lacks the 'sinogram' dataset or the 'geometry' attribute; "
                                 "make sinograms with `medrecon simulate ct`")
            ds = f["sinogram"]
            if ds.ndim != 3:
                raise InputError(f"{path.name}: 'sinogram' must be (slices, views, detectors), got {ds.shape}")
            geometry = json.loads(f.attrs["geometry"])
            sino = ds[()].astype(np.float32)
            target = f["target_hu"][()].astype(np.float32) if "target_hu" in f else None
            extra = {k: f[k][()] for k in ("source_affine", "slice_indices") if k in f}
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()
                     if k in ("seed", "source_space", "source_name", "views", "format")}
            mu_water = float(f.attrs.get("mu_water", 0.019))
            photons = float(f.attrs.get("photons", 0.0))
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path.name} is not a readable sinogram file ({type(exc).__name__})") from None
    if len(geometry.get("angles", [])) != sino.shape[1]:
        raise InputError(f"{path.name}: the geometry has {len(geometry.get('angles', []))} angles but the sinogram "
                         f"has {sino.shape[1]} views")
    if not np.isfinite(sino).all():
        raise InputError(f"{path.name}: the sinogram contains NaN or Inf values")
    return SinogramFile(sino, geometry, mu_water, photons, target, extra, attrs)
