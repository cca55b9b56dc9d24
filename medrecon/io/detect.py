"""Decide a file's format from its content, never from its name alone.

Names lie (``scan.h5`` may be ISMRMRD raw data or a fastMRI file; ``.hdr`` may be BART text or an
Analyze/NIfTI header), so every decision reads magic bytes or, for HDF5, the dataset names.
"""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from pathlib import Path

import h5py

from medrecon.errors import InputError
from medrecon.io.guards import memory_limit, reader_errors

__all__ = ["FORMATS", "detect_format"]

FORMATS = ("fastmri", "ismrmrd", "bart", "dicom", "nifti", "nrrd", "npy", "npz", "ct-sinogram")

_HEAD = 548  # enough for the DICOM preamble (132) and the NIfTI-1 magic at 344
_FASTMRI_KEYS = ("kspace", "reconstruction", "reconstruction_rss", "reconstruction_esc")
_MAX_DICOM_PROBE = 64  # files looked at when deciding whether a folder is a DICOM series


def _head(path: Path, n: int = _HEAD) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise InputError(f"cannot read {path.name} ({type(exc).__name__})") from exc


def _is_nifti(head: bytes) -> bool:
    # NIfTI-1: magic "n+1\0"/"ni1\0" at byte 344; NIfTI-2: "n+2\0"/"ni2\0" at byte 4.
    return head[344:348] in (b"n+1\0", b"ni1\0") or head[4:8] in (b"n+2\0", b"ni2\0")


def _gunzip_head(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read(_HEAD)  # bounded read: no decompression bomb
    except (OSError, EOFError, ValueError, zlib.error):  # a damaged stream is simply "not gzip'd NIfTI"
        return b""


def _hdf5_kind(path: Path) -> str:
    try:
        with reader_errors(path.name, "HDF5"), memory_limit(), h5py.File(path, "r") as f:
            dataset = f.get("dataset")
            if isinstance(dataset, h5py.Group) and "xml" in dataset:
                return "ismrmrd"
            if "sinogram" in f:
                return "ct-sinogram"
            if any(key in f for key in _FASTMRI_KEYS):
                return "fastmri"
    except OSError as exc:
        raise InputError(f"cannot open {path.name}; the HDF5 file is damaged or truncated") from exc
    raise InputError(
        f"{path.name} is HDF5 but holds none of /dataset/xml (ISMRMRD), kspace/reconstruction (fastMRI) or sinogram"
    )


def _is_bart_header(path: Path) -> bool:
    return path.is_file() and _head(path, 64).lstrip().startswith(b"# Dimensions")


def _bart_pair(path: Path) -> bool:
    """``x``, ``x.hdr`` or ``x.cfl`` naming a text BART header plus its ``.cfl`` data file."""
    base = path.with_suffix("") if path.suffix.lower() in (".cfl", ".hdr") else path
    hdr, cfl = base.with_name(base.name + ".hdr"), base.with_name(base.name + ".cfl")
    return cfl.is_file() and _is_bart_header(hdr)


def _is_dicom_file(path: Path) -> bool:
    return _head(path, 132)[128:132] == b"DICM"


def _folder_kind(path: Path) -> str:
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if any(_is_dicom_file(p) for p in files[:_MAX_DICOM_PROBE]):
        return "dicom"
    raise InputError(f"folder {path.name} holds no DICOM files; give a DICOM series folder or a single file")


def _is_npz(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except Exception:  # noqa: BLE001 - a probe: any damaged zip is simply "not npz"
        return False
    return bool(names) and all(n.endswith(".npy") for n in names)


def detect_format(path: str | os.PathLike) -> str:
    """The format of a file or folder, decided by content.

    Rules, in order: a folder with DICOM files -> ``"dicom"``; a BART ``.hdr`` (text starting
    ``# Dimensions``) with its ``.cfl`` -> ``"bart"`` (the path may be the base name, the
    ``.hdr`` or the ``.cfl``); HDF5 -> ``"ismrmrd"`` (``/dataset/xml``), ``"ct-sinogram"``
    (``sinogram``) or ``"fastmri"`` (``kspace`` or a ``reconstruction*`` dataset); ``DICM`` at
    byte 128 -> ``"dicom"``; NIfTI magic, plain or gzip-compressed -> ``"nifti"``; ``NRRD000x``
    -> ``"nrrd"``; ``\\x93NUMPY`` -> ``"npy"``; a zip of ``.npy`` members -> ``"npz"``.

    Returns:
        One of :data:`FORMATS`.

    Raises:
        InputError: the path does not exist, cannot be read, or matches no known format.
    """
    path = Path(path)
    if path.is_dir():
        return _folder_kind(path)
    if _bart_pair(path):
        return "bart"
    if not path.is_file():
        raise InputError(f"input {path.name} does not exist")
    head = _head(path)
    if head.startswith(b"\x89HDF\r\n\x1a\n") or h5py.is_hdf5(path):  # is_hdf5 also finds user blocks
        return _hdf5_kind(path)
    if head[128:132] == b"DICM":
        return "dicom"
    if _is_nifti(head) or (head[:2] == b"\x1f\x8b" and _is_nifti(_gunzip_head(path))):
        return "nifti"
    if head.startswith(b"NRRD000"):
        return "nrrd"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") and _is_npz(path):
        return "npz"
    raise InputError(
        f"{path.name} is not a recognised file; medrecon reads fastMRI/ISMRMRD/sinogram HDF5, BART cfl, "
        "DICOM, NIfTI, NRRD and numpy files"
    )
