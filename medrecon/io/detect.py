"""Decide a file's format from its content, never from its name alone.

Names lie (``scan.h5`` may be ISMRMRD raw data or a fastMRI file; ``.hdr`` may be BART text or an
Analyze/NIfTI header), so every decision reads magic bytes or, for HDF5, the dataset names. The rules
live with each format (:mod:`medrecon.io.formats`); this module keeps the name-returning entry point.
"""

from __future__ import annotations

import os

from medrecon.io import formats

__all__ = ["FORMATS", "detect_format"]

#: The registered formats' names, in detection order.
FORMATS = formats.names()


def detect_format(path: str | os.PathLike) -> str:
    """The name of the format of a file or folder, decided by content (:func:`medrecon.io.formats.detect`).

    Shipped formats: ``bart`` (a text ``.hdr`` starting ``# Dimensions`` with its ``.cfl``; the path may be
    the base name, the ``.hdr`` or the ``.cfl``), ``dicom`` (a folder with DICOM files, or ``DICM`` at byte
    128), HDF5 ``ismrmrd`` (``/dataset/xml``), ``ct-sinogram`` (``sinogram``) or ``fastmri`` (``kspace`` or a
    ``reconstruction*`` dataset), ``nifti`` (magic, plain or gzip-compressed), ``nrrd`` (``NRRD000x``),
    ``npy`` (``\\x93NUMPY``) and ``npz`` (a zip of ``.npy`` members).

    Raises:
        InputError: the path does not exist, cannot be read, or matches no registered format.
    """
    return formats.detect(path).name
