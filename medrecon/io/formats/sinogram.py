"""medrecon CT sinogram HDF5 (``medrecon simulate ct``): line integrals, geometry, dose, optional target.

Duties: dataset shapes bound every read (:mod:`medrecon.io.sinogram`); the geometry is validated before
a projector is built; parsed in the sandbox; identifiers: identifying attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from . import register
from .base import FormatSpec, Probe, Sample
from .hdf5 import hdf5_identifiers, read_h5_image

__all__ = ["SPEC", "tiny_sinogram"]


def sniff(p: Probe) -> bool:
    return p.is_hdf5 and ("sinogram" in p.h5_names() or "counts" in p.h5_names())


def read(path: Path, slices: Optional[str], axes: Optional[str]):
    from medrecon.io.measurement import LoadedInput, positive, slab_affine, slice_range
    from medrecon.io.sinogram import read_sinogram

    f = read_sinogram(path)
    s = slice_range(slices, f.sinogram.shape[0])
    aff = f.extra.get("source_affine")
    return LoadedInput("ct", f.sinogram[s], geometry=f.geometry, mu_water=f.mu_water, photons=f.photons,
                       target=None if f.target_hu is None else f.target_hu[s],
                       affine=None if aff is None else slab_affine(np.asarray(aff), s.start or 0),
                       space=str(f.attrs.get("source_space")) if f.attrs.get("source_space") else None,
                       pixel_mm=positive((f.geometry or {}).get("pixel_size")))


def tiny_sinogram(path, size: int = 16, views: int = 8) -> Path:
    """A noiseless parallel-beam sinogram file of a water disc in air, ``size x size`` pixels, ``views`` angles."""
    import torch

    from medrecon.io.sinogram import write_sinogram
    from operators import ParallelBeamCT, hu_to_mu

    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    hu = np.where(xx**2 + yy**2 < 0.5, 40.0, -1000.0).astype(np.float32)[None]
    A = ParallelBeamCT((size, size), views)
    sino = A(hu_to_mu(torch.from_numpy(hu), 0.019))
    return write_sinogram(path, sino.numpy(), A.geometry(), 0.019, 0.0, 0, target_hu=hu)


SPEC = register(FormatSpec(
    "ct-sinogram", sniff, order=31, read_measurement=read, read_image=read_h5_image, identifiers=hdf5_identifiers,
    samples={"sinogram": Sample(tiny_sinogram, "x.h5")},
    duties="HDF5 shapes bound every read; geometry validated before a projector is built; sandboxed parse; "
           "identifiers: identifying attrs"))
