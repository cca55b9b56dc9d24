"""numpy k-space: ``.npy`` arrays and ``.npz`` archives (``kspace`` and an optional ``mask``), axes by ``--axes``;
or non-Cartesian ``.npz`` archives (a ``traj`` member; :mod:`medrecon.io.numpy_kspace`), axes fixed.

Duties: the array header's shape and dtype are read and bounded before the data (:mod:`medrecon.io.
numpy_kspace`); object arrays (pickles) are refused; parsed in the sandbox; no identifying fields.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from . import register
from .base import FormatSpec, Probe, Sample, tiny_kspace

__all__ = ["NPY", "NPZ", "tiny_noncartesian_npz", "tiny_npy", "tiny_npz"]


def read(path: Path, slices: Optional[str], axes: Optional[str]):
    from medrecon.io.measurement import LoadedInput, slice_range
    from medrecon.io.numpy_kspace import is_noncartesian_npz, read_numpy_kspace, read_numpy_noncartesian

    if is_noncartesian_npz(path):  # a 'traj' member: (S, C, M) k-space with its trajectory; --axes is not used
        from medrecon.io.noncartesian import to_loaded_input

        return to_loaded_input(read_numpy_noncartesian(path), slices, path.name)
    k, m = read_numpy_kspace(path, axes)
    s = slice_range(slices, k.shape[0])
    return LoadedInput("mri", k[s], m, tuple(k.shape[-2:]))


def sniff_npy(p: Probe) -> bool:
    return p.head(6) == b"\x93NUMPY"


def sniff_npz(p: Probe) -> bool:
    if p.head(4) != b"PK\x03\x04":
        return False
    try:
        with zipfile.ZipFile(p.path) as z:
            names = z.namelist()
    except Exception:  # noqa: BLE001 - a probe: any damaged zip is simply "not npz"
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def tiny_npy(path, **kw) -> Path:
    """k-space ``(S, C, H, W)`` as ``.npy`` (read with ``--axes SCHW``)."""
    k, _, _ = tiny_kspace(**kw)
    np.save(path, k)
    return Path(path)


def tiny_npz(path, **kw) -> Path:
    """k-space and its column mask as a compressed ``.npz`` (read with ``--axes SCHW``)."""
    k, mask, _ = tiny_kspace(**kw)
    np.savez_compressed(path, kspace=k, mask=mask)
    return Path(path)


def tiny_noncartesian_npz(path, **kw) -> Path:
    """Radial multi-coil k-space with its trajectory, matrix, coil maps and target as ``.npz``
    (:func:`medrecon.io.noncartesian.tiny_noncartesian`)."""
    from medrecon.io.noncartesian import tiny_noncartesian
    from medrecon.io.numpy_kspace import write_noncartesian_npz

    k, traj, matrix, maps, target = tiny_noncartesian(**kw)
    return write_noncartesian_npz(path, k, traj, matrix, true_maps=maps, target=target)


_DUTIES = "array header shape/dtype bounded before reading; no pickles; sandboxed parse; no identifying fields"
NPY = register(FormatSpec("npy", sniff_npy, order=70, read_measurement=read, samples={"npy": Sample(tiny_npy, "x.npy")},
                          duties=_DUTIES))
NPZ = register(FormatSpec("npz", sniff_npz, order=80, read_measurement=read,
                          samples={"npz": Sample(tiny_npz, "x.npz"),
                                   "npz_noncart": Sample(tiny_noncartesian_npz, "x.npz")},
                          duties=_DUTIES))
