"""ISMRMRD raw data (HDF5 ``/dataset/xml`` + ``/dataset/data`` acquisitions), 2-D multi-coil: Cartesian, or
non-Cartesian when the imaging acquisitions carry a trajectory (:mod:`medrecon.io.ismrmrd_io`).

Duties: the encoded matrix and acquisition count from the XML header are bounded before the k-space is
allocated (:mod:`medrecon.io.ismrmrd_io`); the XML is parsed with defusedxml; parsed in the sandbox;
identifiers: ``subjectInformation`` and identifying attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from . import register
from .base import FormatSpec, Probe, Sample, subject_xml, tiny_kspace
from .hdf5 import hdf5_identifiers, read_h5_image

__all__ = ["SPEC", "tiny_ismrmrd", "tiny_noncartesian_ismrmrd"]


def sniff(p: Probe) -> bool:
    return p.is_hdf5 and "dataset/xml" in p.h5_names()


def read(path: Path, slices: Optional[str], axes: Optional[str]):
    from medrecon.io.ismrmrd_io import has_trajectory, read_ismrmrd, read_ismrmrd_noncartesian
    from medrecon.io.measurement import from_kspace_volume

    if has_trajectory(path):  # acquisitions with a trajectory: (S, C, M) k-space, the Cartesian path untouched
        from medrecon.io.noncartesian import to_loaded_input

        return to_loaded_input(read_ismrmrd_noncartesian(path), slices, path.name)
    return from_kspace_volume(read_ismrmrd(path), slices, path.name)


def tiny_ismrmrd(path, planted: bool = False, **kw) -> Path:
    """An ISMRMRD raw-data file (one acquisition per sampled column); ``planted`` adds subjectInformation."""
    import h5py

    from medrecon.io.ismrmrd_io import write_ismrmrd

    k, mask, _ = tiny_kspace(**kw)
    path = write_ismrmrd(path, k, mask=mask)
    if planted:
        with h5py.File(path, "r") as f:
            xml = bytes(np.asarray(f["dataset/xml"][()]).reshape(-1)[0])
        start = xml.index(b">", xml.index(b"<ismrmrdHeader")) + 1
        xml = xml[:start] + subject_xml().encode() + xml[start:]
        with h5py.File(path, "a") as f:
            del f["dataset/xml"]
            f.create_dataset("dataset/xml", data=[xml], dtype=h5py.string_dtype())
    return Path(path)


def tiny_noncartesian_ismrmrd(path, **kw) -> Path:
    """An ISMRMRD raw-data file of radial k-space, one acquisition (with its trajectory) per spoke."""
    from medrecon.io.ismrmrd_io import write_ismrmrd_noncartesian
    from medrecon.io.noncartesian import tiny_noncartesian

    k, traj, matrix, _, _ = tiny_noncartesian(**kw)
    return write_ismrmrd_noncartesian(path, k, traj, matrix)


SPEC = register(FormatSpec(
    "ismrmrd", sniff, order=30, read_measurement=read, read_image=read_h5_image, identifiers=hdf5_identifiers,
    samples={"ismrmrd": Sample(tiny_ismrmrd, "x.h5"), "ismrmrd_noncart": Sample(tiny_noncartesian_ismrmrd, "x.h5")},
    duties="XML header sizes bounded before allocation; defusedxml; sandboxed parse; identifiers: "
           "subjectInformation, identifying attrs"))
