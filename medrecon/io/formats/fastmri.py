"""fastMRI HDF5: multi-coil k-space (``kspace``, optional ``mask``, ``ismrmrd_header``) or reconstructions.

Duties: sizes come from the HDF5 dataset shapes and are checked against ``MEDRECON_MAX_GB`` before any
array is read (:mod:`medrecon.io.fastmri`); parsed in the sandbox; identifiers are identifying attributes
and the XML header's ``subjectInformation``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from . import register
from .base import PLANTED, FormatSpec, Output, Probe, Sample, subject_xml, tiny_kspace
from .hdf5 import hdf5_identifiers, read_h5_image

__all__ = ["SPEC", "tiny_fastmri"]

_KEYS = ("kspace", "reconstruction", "reconstruction_rss", "reconstruction_esc")


def sniff(p: Probe) -> bool:
    return p.is_hdf5 and any(k in p.h5_names() for k in _KEYS)


def read(path: Path, slices: Optional[str], axes: Optional[str]):
    from medrecon.io.fastmri import read_fastmri
    from medrecon.io.measurement import from_kspace_volume

    return from_kspace_volume(read_fastmri(path), slices, path.name)


def tiny_fastmri(path, planted: bool = False, **kw) -> Path:
    """A fastMRI multicoil file (kspace, mask, reconstruction_rss, header); ``planted`` adds identifiers."""
    import h5py

    from medrecon.io.fastmri import minimal_ismrmrd_header, write_fastmri_kspace

    k, mask, target = tiny_kspace(**kw)
    path = Path(path)
    header = None
    if planted:
        xml = minimal_ismrmrd_header(k.shape[-2:], k.shape[-2:], k.shape[0])
        # subjectInformation comes first in the ISMRMRD schema's sequence.
        tag = '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        header = xml.replace(tag, tag + subject_xml(), 1).encode()
    write_fastmri_kspace(path, k, target=target, mask=mask, header_xml=header)
    if planted:  # the writer refuses identifying attrs (rightly); a hospital's converter may not
        with h5py.File(path, "a") as f:
            f.attrs["patient_id"] = PLANTED["id"]
            f.attrs["patient_name"] = PLANTED["name"]
            f.attrs["patient_birth_date"] = PLANTED["birth"]
    return path


def write(out: Path, o: Output) -> list[Path]:
    """A fastMRI-style reconstruction file: ``reconstruction`` (and ``std``) datasets."""
    from medrecon.io.fastmri import write_reconstruction

    return [write_reconstruction(out, o.image, std=o.std)]


SPEC = register(FormatSpec(
    "fastmri", sniff, order=32, read_measurement=read, read_image=read_h5_image, identifiers=hdf5_identifiers,
    samples={"fastmri": Sample(tiny_fastmri, "x.h5")}, output="h5", write=write, out_suffix=".h5",
    duties="HDF5 shapes bound every read (MEDRECON_MAX_GB); sandboxed parse; identifiers: identifying attrs, "
           "ismrmrd_header subjectInformation"))
