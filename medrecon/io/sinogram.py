"""CT sinogram files (HDF5): measurements plus everything needed to rebuild the projector.

Layout: dataset ``sinogram`` float32 ``(slices, views, detectors)`` (line integrals of attenuation,
dimensionless), and/or ``counts`` float32 of the same shape (the pre-log detector counts of a low-dose scan,
whose incident count ``I0`` is the ``photons`` attribute; a file with counts only is read as
``log(I0 / max(counts, 1))``), ``angles`` float64 ``(views,)`` radians, optional ``target_hu`` float32
``(slices, H, W)`` and ``source_affine`` ``(4, 4)``/``slice_indices``; attributes ``geometry`` (JSON of
the projector's ``geometry()``), ``mu_water`` (/mm), ``photons`` (0 = noiseless), ``seed``,
``source_space`` and ``source_name`` (a file name, never a patient identifier).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_write
from medrecon.io.privacy import scrub_text
from medrecon.io.guards import check_size, memory_limit, nbytes_of, reader_errors

__all__ = ["SinogramFile", "projector_from_geometry", "read_sinogram", "write_sinogram"]


@dataclass
class SinogramFile:
    """Contents of a sinogram file. Shapes: sinogram ``(S, V, D)``, target_hu ``(S, H, W)``."""

    sinogram: np.ndarray
    geometry: dict
    mu_water: float = 0.019
    photons: float = 0.0
    target_hu: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)


def projector_from_geometry(geometry: dict):
    """Rebuild the CT operator stored with a sinogram (the geometry is data, checked, never evaluated)."""
    from operators import FanBeamCT, FanBeamCurvedCT, ParallelBeamCT

    kind = geometry.get("type") if isinstance(geometry, dict) else None
    classes = {"parallel": ParallelBeamCT, "fan_flat": FanBeamCT, "fan_curved": FanBeamCurvedCT}
    cls = classes.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InputError(f"unknown CT geometry type (not quoted: file contents); expected {_EXPECTED}")
    try:
        return cls.from_geometry(geometry)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RuntimeError) as exc:
        raise InputError(f"the stored CT geometry does not describe a valid projector ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); regenerate the sinogram") from exc


# Required positive numbers per geometry type (the projectors' geometry_type). A fan-beam geometry may also hold
# scan_range (radians; absent = a full scan, as files written before short scans). There never was a type "fan":
# the flat-detector projector has always written "fan_flat".
_POSITIVE = {"parallel": ("pixel_size", "detector_spacing"),
             "fan_flat": ("pixel_size", "detector_spacing", "source_distance", "detector_distance"),
             "fan_curved": ("pixel_size", "detector_spacing", "source_distance", "detector_distance")}
_OPTIONAL_POSITIVE = ("scan_range",)
_EXPECTED = "'parallel', 'fan_flat' or 'fan_curved'"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def check_geometry(geometry, sino_shape: tuple[int, ...], name: str) -> dict:
    """Validate a stored geometry against the sinogram before any projector is built.

    Raises:
        InputError: not a dict, unknown type, non-finite or non-positive sizes, angles or detectors
            that do not match the sinogram, or an image too large for ``MEDRECON_MAX_GB``.
    """
    if not isinstance(geometry, dict):
        raise InputError(f"{name}: the 'geometry' attribute is not a JSON object; regenerate the sinogram")
    kind = geometry.get("type")
    if kind not in _POSITIVE:
        raise InputError(f"{name}: unknown CT geometry type (not quoted: file contents); expected {_EXPECTED}")
    s, views, detectors = sino_shape
    angles = geometry.get("angles")
    if not isinstance(angles, list) or not all(_finite(a) for a in angles):
        raise InputError(f"{name}: the geometry's 'angles' are not a list of finite numbers")
    if len(angles) != views:
        raise InputError(f"{name}: the geometry has {len(angles)} angles but the sinogram has {views} views")
    if geometry.get("n_detectors") != detectors:
        raise InputError(f"{name}: the geometry has {str(geometry.get('n_detectors'))[:20]} detectors but the "
                         f"sinogram has {detectors}")
    shape = geometry.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) and v > 0 for v in shape)):
        raise InputError(f"{name}: the geometry's image_shape must be two positive integers")
    for key in _POSITIVE[kind]:
        if not (_finite(geometry.get(key)) and geometry[key] > 0):
            raise InputError(f"{name}: the geometry's {key} must be a positive number")
    for key in _OPTIONAL_POSITIVE if kind != "parallel" else ():
        if geometry.get(key) is not None and not (_finite(geometry[key]) and geometry[key] > 0):
            raise InputError(f"{name}: the geometry's {key} must be a positive number")
    check_size(nbytes_of((s, *shape), 8), f"CT images ({s}, {shape[0]}, {shape[1]})", name)
    return geometry


def write_sinogram(path, sinogram: np.ndarray, geometry: dict, mu_water: float, photons: float, seed: int,
                   target_hu: np.ndarray | None = None, extra: dict | None = None,
                   attrs: dict | None = None) -> Path:
    """Write a sinogram file atomically (see the module docstring for the layout)."""
    sinogram = np.asarray(sinogram, dtype=np.float32)
    if sinogram.ndim != 3:
        raise InputError(f"sinogram must be (slices, views, detectors), got shape {sinogram.shape}")
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
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
            f.attrs[k] = scrub_text(v) if isinstance(v, str) else v  # a source file name may repeat an identifier
    return Path(path)


def read_sinogram(path) -> SinogramFile:
    """Read a sinogram file, checking the layout before reading arrays."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path.name}: no such file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path.name} is not an HDF5 sinogram file")
    name = path.name
    with reader_errors(name, "sinogram HDF5"), memory_limit(), h5py.File(path, "r") as f:
        key = "sinogram" if "sinogram" in f else "counts"
        if key not in f or "geometry" not in f.attrs:
            raise InputError(f"{name} lacks the 'sinogram' (or 'counts') dataset or the 'geometry' attribute; "
                             "make sinograms with `medrecon simulate ct`")
        ds = f[key]
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 3 or min(ds.shape) < 1 or ds.dtype.kind not in "fiu":
            raise InputError(f"{name}: '{key}' must be real (slices, views, detectors), got "
                             f"{getattr(ds, 'shape', None)} {getattr(ds, 'dtype', '')}")
        check_size(nbytes_of(ds.shape, 8), f"{key} {ds.shape}", name)
        geometry = check_geometry(json.loads(f.attrs["geometry"]), tuple(ds.shape), name)
        if key == "counts":
            i0 = float(f.attrs.get("photons", 0.0))
            if not (np.isfinite(i0) and i0 > 0):
                raise InputError(f"{name}: a count sinogram needs the incident count I0 > 0 in its 'photons' "
                                 "attribute; without it the counts cannot be turned into line integrals")
            counts = ds[()].astype(np.float64)
            if not np.isfinite(counts).all():
                raise InputError(f"{name}: the counts contain NaN or Inf values")
            import torch

            from operators import counts_to_line_integrals

            sino = counts_to_line_integrals(torch.from_numpy(counts), i0).numpy().astype(np.float32)
        else:
            sino = ds[()].astype(np.float32)
        target = _read_target(f, tuple(ds.shape), name)
        extra = {}
        for k in ("source_affine", "slice_indices"):
            if k in f:
                check_size(nbytes_of(f[k].shape, f[k].dtype.itemsize), k, name)
                extra[k] = f[k][()]
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()
                 if k in ("seed", "source_space", "source_name", "views", "format")}
        mu_water = float(f.attrs.get("mu_water", 0.019))
        photons = float(f.attrs.get("photons", 0.0))
    if not (np.isfinite(mu_water) and mu_water > 0 and np.isfinite(photons) and photons >= 0):
        raise InputError(f"{name}: mu_water must be positive and photons non-negative; regenerate the sinogram")
    if not np.isfinite(sino).all():
        raise InputError(f"{path.name}: the sinogram contains NaN or Inf values")
    return SinogramFile(sino, geometry, mu_water, photons, target, extra, attrs)


def _read_target(f: h5py.File, sino_shape: tuple[int, ...], name: str) -> np.ndarray | None:
    if "target_hu" not in f:
        return None
    ds = f["target_hu"]
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 3 or ds.shape[0] != sino_shape[0] or ds.dtype.kind not in "fiu":
        raise InputError(f"{name}: 'target_hu' must be real ({sino_shape[0]}, H, W), got {getattr(ds, 'shape', None)}")
    check_size(nbytes_of(ds.shape, 4), f"target_hu {ds.shape}", name)
    return ds[()].astype(np.float32)
