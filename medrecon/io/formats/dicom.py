"""DICOM: a single file (``DICM`` at byte 128; multi-frame included) or a series folder; images only.

Duties: rows x columns x frames x bits from the header bound the pixel data before it is decoded
(:mod:`medrecon.io.volumes`); pixel decoding (RLE, JPEG 2000 codecs) runs in the sandbox; identifiers:
PatientName, PatientID, PatientBirthDate, OtherPatientIDs, OtherPatientNames, AccessionNumber.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import numpy as np

from medrecon.io import privacy

from . import register
from .base import PLANTED, FormatSpec, Output, Probe, Sample, name_parts

__all__ = ["SPEC", "tiny_dicom", "dicom_identifiers"]

_MAX_PROBE = 64  # files looked at when deciding whether a folder is a DICOM series
_ID_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "OtherPatientNames",
            "AccessionNumber")


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def sniff(p: Probe) -> bool:
    if p.is_dir:
        files = sorted(f for f in p.path.iterdir() if f.is_file() and not f.name.startswith("."))
        return any(_is_dicom_file(f) for f in files[:_MAX_PROBE])
    return p.head(132)[128:132] == b"DICM"


def read_image(path: Path, modality: Optional[str] = None):
    from medrecon.io.volumes import load_dicom

    return load_dicom(path)


#: A series folder is scanned file by file (headers only) up to this many files: each file of a series can
#: carry its own identifiers (a merged export, OtherPatientIDs on some slices only).
MAX_IDENTIFIER_FILES = 4096


def dicom_identifiers(path: Path) -> list[str]:
    """The identifying fields of a DICOM file, or of every DICOM file of a series folder (headers only)."""
    import pydicom

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())[:MAX_IDENTIFIER_FILES]
    else:
        files = [path]
    found: set[str] = set()
    for file in files:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=list(_ID_KEYS))
        except Exception:  # noqa: BLE001  # not DICOM, or unreadable: nothing to collect; the reader reports it
            continue
        for key in _ID_KEYS:
            value = ds.get(key)
            values = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
            for v in values:
                if v not in (None, ""):
                    found.update(name_parts(str(v)))
    return sorted(found)


def tiny_dicom(path, planted: bool = True, size: int = 16, z: float = 0.0,
               transfer_syntax: str | None = None, series_uid: str | None = None) -> Path:
    """One CT slice (int16 HU via RescaleIntercept) with a patient module; optionally compressed.

    Args:
        path: the ``.dcm`` file.
        planted: fill PatientName/ID/BirthDate/AccessionNumber with :data:`~.base.PLANTED` (else blank).
        size: rows and columns.
        z: ImagePositionPatient z (mm), to build series.
        transfer_syntax: ``None`` (explicit VR little endian), ``"rle"`` or ``"jpeg2000"``.
        series_uid: shared SeriesInstanceUID for series; a new one by default.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid

    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    pixels = np.where(xx**2 + yy**2 < 0.5, 1040, 24).astype(np.int16)  # HU = stored - 1024
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName = PLANTED["name"] if planted else ""
    ds.PatientID = PLANTED["id"] if planted else ""
    ds.PatientBirthDate = PLANTED["birth"] if planted else ""
    ds.AccessionNumber = PLANTED["accession"] if planted else ""
    ds.Modality = "CT"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.InstanceNumber = round(z) + 1
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 1.0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = pixels.tobytes()
    if transfer_syntax == "rle":
        ds.compress(RLELossless)
    elif transfer_syntax == "jpeg2000":
        ds.compress(JPEG2000Lossless)
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def write(out: Path, o: Output) -> list[Path]:
    """A derived DICOM series in the folder ``out`` (and the std series in ``<out>_std``, series number 901).

    The input's affine is used only when it is in LPS (DICOM's patient space); ``like`` lends its study.
    """
    from medrecon import __version__
    from medrecon.io.dicom_writer import write_dicom_series

    modality = "CT" if o.modality == "ct" else "MR"
    aff = o.affine if (o.affine is not None and o.space == "LPS") else None
    deriv = f"medrecon {__version__} {o.method} prior={o.prior}"
    window = (40.0, 400.0) if o.modality == "ct" else None
    # With --like the series carries the source patient's module on purpose: documented patient data, the one
    # output the privacy layer lets identifiers into (medrecon.io.privacy).
    allow = privacy.allow_identifiers() if o.like is not None else contextlib.nullcontext()
    with allow:
        written = list(write_dicom_series(out, o.image, aff, modality, o.like, f"medrecon {o.method}", deriv,
                                          window=window))
        if o.std is not None:
            units = "HU" if o.modality == "ct" else "image units"
            written.extend(write_dicom_series(out.with_name(out.name + "_std"), o.std, aff, modality, o.like,
                                              f"medrecon {o.method} posterior std ({units}, {o.samples} samples)",
                                              deriv + f" posterior std of {o.samples} samples", series_number=901))
    return written


SPEC = register(FormatSpec(
    "dicom", sniff, order=10, read_image=read_image, identifiers=dicom_identifiers, output="dicom", write=write,
    out_suffix="_dicom", out_folder=True,
    samples={"dicom": Sample(lambda p: tiny_dicom(p, planted=True), "x.dcm"),
             "dicom-rle": Sample(lambda p: tiny_dicom(p, transfer_syntax="rle"), "x.dcm"),
             # OpenJPEG's default 6 wavelet levels need at least 32x32 pixels.
             "dicom-j2k": Sample(lambda p: tiny_dicom(p, size=32, transfer_syntax="jpeg2000"), "x.dcm")},
    duties="rows x columns x frames x bits bound the pixel data before decoding; codecs run sandboxed; "
           "identifiers: patient name/ID/birth date, other IDs/names, accession number"))
