"""File input/output: fastMRI HDF5, image volumes (DICOM, NIfTI, NRRD) and atomic writes.

Readers return plain numpy arrays plus non-identifying metadata; every user-caused failure is a
:class:`medrecon.errors.InputError` whose message never contains patient identifiers.
"""

from medrecon.io.atomic import atomic_write
from medrecon.io.bart import read_bart_kspace, read_cfl, write_cfl
from medrecon.io.detect import detect_format
from medrecon.io.dicom_writer import write_dicom_series
from medrecon.io.fastmri import (
    FastMRIVolume,
    minimal_ismrmrd_header,
    read_fastmri,
    write_fastmri_kspace,
    write_reconstruction,
)
from medrecon.io.ismrmrd_io import read_ismrmrd, write_ismrmrd
from medrecon.io.nifti_writer import write_nifti
from medrecon.io.run_record import scrub_identifiers, sha256_path, write_run_record
from medrecon.io.volumes import Volume, load_dicom, load_nifti, load_nrrd, load_volume, lps_to_ras

__all__ = [
    "FastMRIVolume",
    "Volume",
    "atomic_write",
    "detect_format",
    "load_dicom",
    "load_nifti",
    "load_nrrd",
    "load_volume",
    "lps_to_ras",
    "minimal_ismrmrd_header",
    "read_bart_kspace",
    "read_cfl",
    "read_fastmri",
    "read_ismrmrd",
    "scrub_identifiers",
    "sha256_path",
    "write_cfl",
    "write_dicom_series",
    "write_fastmri_kspace",
    "write_ismrmrd",
    "write_nifti",
    "write_reconstruction",
    "write_run_record",
]
