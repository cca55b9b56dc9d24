"""File input/output: fastMRI HDF5, image volumes (DICOM, NIfTI, NRRD) and atomic writes.

Readers return plain numpy arrays plus non-identifying metadata; every user-caused failure is a
:class:`medrecon.errors.InputError` whose message never contains patient identifiers.
"""

from medrecon.io.atomic import atomic_write
from medrecon.io.fastmri import (
    FastMRIVolume,
    minimal_ismrmrd_header,
    read_fastmri,
    write_fastmri_kspace,
    write_reconstruction,
)
from medrecon.io.volumes import Volume, load_dicom, load_nifti, load_nrrd, load_volume, lps_to_ras

__all__ = [
    "FastMRIVolume",
    "Volume",
    "atomic_write",
    "load_dicom",
    "load_nifti",
    "load_nrrd",
    "load_volume",
    "lps_to_ras",
    "minimal_ismrmrd_header",
    "read_fastmri",
    "write_fastmri_kspace",
    "write_reconstruction",
]
