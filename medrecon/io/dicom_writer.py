"""Write a reconstructed volume as a new DICOM series of the same patient and study.

One file per slice, explicit VR little endian, signed 16-bit pixels with RescaleSlope/Intercept.
Geometry comes from the ``(slice, row, col)`` -> LPS affine used by
:class:`medrecon.io.volumes.Volume` (row index along the IOP column cosine by PixelSpacing[0],
column index along the IOP row cosine by PixelSpacing[1], slice ``k`` at ``origin + k *
affine[:3, 0]``), so :func:`medrecon.io.volumes.load_dicom` reads back the same voxels at the same
patient coordinates.

The Patient, Study and Frame of Reference modules are copied from a source image (``like``): the
reconstruction belongs to that patient and study, and (being computed from the same acquisition)
lives in the same frame of reference. The series is always new (new Series and SOP Instance UIDs,
ImageType ``DERIVED\\SECONDARY``). Identifiers are copied into the DICOM files only; they are
never logged or put into error messages.
"""

from __future__ import annotations

import os
import re
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_write

__all__ = ["write_dicom_series", "check_like_template", "LIKE_REQUIRED"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

#: Copied from ``like``: Patient, Patient Study, General Study and Frame of Reference modules.
PATIENT_STUDY_KEYS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "PatientSize", "PatientWeight", "PatientIdentityRemoved", "DeidentificationMethod",
    "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName",
    "StudyDescription", "FrameOfReferenceUID", "PositionReferenceIndicator",
)  # fmt: skip
#: Copied when ``like`` has the output's modality: how the source data were acquired.
ACQUISITION_KEYS = {
    "CT": ("KVP", "BodyPartExamined", "PatientPosition", "ConvolutionKernel"),
    "MR": ("ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "MagneticFieldStrength",
           "RepetitionTime", "EchoTime", "InversionTime", "FlipAngle", "EchoTrainLength", "BodyPartExamined",
           "PatientPosition"),
}  # fmt: skip
# Type 2 attributes (must be present, may be empty) of the modules copied above.
_TYPE2_EMPTY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "AccessionNumber", "StudyID", "ReferringPhysicianName", "PositionReferenceIndicator")  # fmt: skip
_INT16 = (-32768, 32767)


# ----------------------------------------------------------------------------- inputs


def _ds(value: float) -> str:
    """A DS string (at most 16 characters) for ``value``."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(value))


def _like_file(like: str | os.PathLike) -> Path:
    """The template file: ``like`` itself, or the first DICOM file (by name) of the folder ``like``."""
    path = Path(like)
    if path.is_dir():
        try:
            candidates = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        except OSError as exc:
            raise InputError(f"cannot list the 'like' folder {path.name} ({type(exc).__name__})") from exc
        path = next((p for p in candidates if _has_dicm(p)), None)  # type: ignore[assignment]
        if path is None:
            raise InputError(f"'like' folder {Path(like).name} holds no DICOM file; give a DICOM image (file or "
                             "series folder) of the patient's study")
    elif not path.is_file():
        raise InputError(f"'like' DICOM path {path.name} does not exist")
    return path


def _like_dataset(like: str | os.PathLike | None) -> Any:
    """Header of the source image: the file, or the first DICOM file (by name) of a folder."""
    if like is None:
        return None
    import pydicom

    path = _like_file(like)
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InputError(f"cannot read the 'like' DICOM file {path.name} ({type(exc).__name__})") from exc


def _has_dicm(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:  # unreadable: not a template we can use
        return False


#: What a ``like`` template must hold: the patient and study the output is filed under (SOP class, study
#: UID, and the type 2 patient attributes, present even when empty) and a consistent image description.
#: A template without them is truncated or not an image: the output would silently land in a new study.
LIKE_REQUIRED = ("SOPClassUID", "StudyInstanceUID", "PatientName", "PatientID", "Modality", "Rows", "Columns",
                 "BitsAllocated", "SamplesPerPixel", "PixelData")
_UNDEFINED_LENGTH = 0xFFFFFFFF


def check_like_template(like: str | os.PathLike) -> None:
    """Refuse a damaged ``--like`` template in one line, before any reconstruction runs.

    Refused: a path that does not exist, a folder with no DICOM file, a file that is not DICOM, a
    truncated file (its pixel data run past the end, or its header stops early), one that lacks an
    attribute of :data:`LIKE_REQUIRED`, has an invalid Study Instance UID, or whose Rows/Columns do not
    describe its pixel data. The header is parsed in a sandboxed child (:func:`medrecon.io.sandbox.isolated`)
    like every input. Messages name the file by base name and the attribute by keyword only: a
    template's values identify the patient and never appear in them.

    Raises:
        InputError: the template cannot serve (see above).
    """
    from medrecon.io.sandbox import isolated

    path = _like_file(like)
    isolated(_check_like_file, path, name=path.name, what="'like' DICOM template")


def _check_like_file(path: Path) -> None:
    """The checks of :func:`check_like_template` on one file (run in the sandbox's child).

    pydicom's warnings and log records are kept here, not passed on: they quote header values (a UID,
    a name), which must not reach the terminal or a log.
    """
    import logging

    logger = logging.getLogger("pydicom")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.CRITICAL + 1)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _check_like_dataset(path, caught)
    finally:
        logger.setLevel(level)
        logger.propagate = propagate


def _check_like_dataset(path: Path, caught: list) -> None:
    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import UID

    name = path.name
    what = f"the 'like' DICOM template {name}"
    truncated = f"{what} is truncated (it ends inside its data); give a complete file"
    try:
        # defer_size: larger values (the pixel data) are not read, only where they lie in the file.
        ds = pydicom.dcmread(path, defer_size=256)
    except InvalidDicomError as exc:
        raise InputError(f"{what} is not a DICOM file; give a DICOM image (file or series folder) of the "
                         "patient's study") from exc
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged files; never quote their text
        raise InputError(f"cannot read {what} ({type(exc).__name__}); it is damaged or truncated") from exc
    # pydicom only warns when a file ends inside an element or before a sequence delimiter.
    if any("end of file" in str(w.message).lower() for w in caught):
        raise InputError(truncated)
    missing = [key for key in LIKE_REQUIRED if key not in ds]
    if len(missing) == len(LIKE_REQUIRED):
        raise InputError(f"{what} holds no patient, study or image attributes; it is truncated or not a DICOM "
                         "image: give a complete image of the patient's study")
    if missing:
        raise InputError(f"{what} lacks {', '.join(missing)}; it is truncated or not a DICOM image: give a "
                         "complete image of the patient's study")
    try:
        # Digits and dots, at most 64 (real scanners' UIDs often break the stricter rule of no leading zeros);
        # empty is accepted: de-identified exports (the shipped CT sample) blank it, as for a type 2 attribute.
        study = str(ds.StudyInstanceUID).strip("\0 ")
        uid_ok = not study or (len(study) <= 64 and re.fullmatch(r"[0-9]+(\.[0-9]+)*", study) is not None)
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
        bits, spp = int(ds.BitsAllocated), int(ds.SamplesPerPixel)
    except Exception as exc:  # noqa: BLE001 - a value that does not parse as its VR says
        raise InputError(f"{what} has unreadable image attributes ({type(exc).__name__}); it is damaged") from exc
    if not uid_ok:
        raise InputError(f"{what} has an invalid StudyInstanceUID; it is damaged: give another image of the study")
    if min(rows, cols, frames, bits, spp) < 1:
        raise InputError(f"{what} has Rows/Columns (or frames, bits, samples) of zero; it is damaged")
    raw = ds.get_item("PixelData", keep_deferred=True)
    if isinstance(raw, RawDataElement) and raw.value is None:  # deferred: its offset and length are known
        length, end = int(raw.length), int(raw.value_tell) + int(raw.length)
    else:
        value = ds.PixelData
        length, end = (len(value) if value is not None else 0), 0
    if length != _UNDEFINED_LENGTH and end > path.stat().st_size:
        raise InputError(truncated)
    compressed = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    compressed = compressed is not None and UID(str(compressed)).is_compressed
    if not compressed and length != _UNDEFINED_LENGTH:
        expected = rows * cols * frames * spp * bits // 8 if bits % 8 == 0 else -(-rows * cols * frames * spp // 8)
        if length not in (expected, expected + 1):  # native pixel data are padded to an even length
            raise InputError(f"{what}: its Rows/Columns do not describe its pixel data (damaged or crafted); give "
                             "another image of the study")


def _geometry(affine: np.ndarray) -> dict[str, Any]:
    """IOP, PixelSpacing, per-slice step and origin from a ``(slice, row, col)`` -> LPS affine."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"affine has shape {affine.shape}; expected a finite 4x4 (slice, row, col) -> LPS matrix")
    row_step, col_step, slice_step = affine[:3, 2], affine[:3, 1], affine[:3, 0]
    spacing = (float(np.linalg.norm(col_step)), float(np.linalg.norm(row_step)))  # PixelSpacing: (row, col)
    thickness = float(np.linalg.norm(slice_step))
    if min(*spacing, thickness) <= 0:
        raise InputError("affine has a zero voxel size; give a valid voxel->LPS affine")
    row_cos, col_cos = row_step / spacing[1], col_step / spacing[0]
    if abs(float(row_cos @ col_cos)) > 1e-4:
        raise InputError("affine's in-plane axes are not orthogonal; DICOM needs an orthonormal orientation")
    normal = np.cross(row_cos, col_cos)
    if abs(float(slice_step @ normal)) < 1e-3 * thickness:
        raise InputError("affine's slice axis lies in the image plane; give a valid 3-D affine")
    return {
        "iop": [*row_cos, *col_cos],
        "spacing": spacing,
        "step": slice_step,
        "thickness": thickness,
        "origin": affine[:3, 3],
        "normal": normal,
    }


def _rescale(data: np.ndarray, modality: str | None) -> tuple[float, float]:
    """``(slope, intercept)`` so that ``round((data - intercept) / slope)`` fits int16.

    CT keeps 1-HU steps (slope 1) and moves the intercept only when the HU range does not fit;
    MR (and anything else) is scaled so that its largest magnitude uses the full int16 range.
    The slope is rounded to its DS string first, so pixels are quantized with the stored value.
    """
    lo, hi = float(data.min()), float(data.max())
    if modality == "CT":
        slope = 1.0 if hi - lo <= 65000 else float(_ds((hi - lo) / 65000))
        fits = _INT16[0] <= round(lo / slope) and round(hi / slope) <= _INT16[1]
        intercept = 0.0 if fits else float(round((lo + hi) / 2))
        return slope, intercept
    peak = max(abs(lo), abs(hi))
    slope = float(_ds(peak / _INT16[1])) if peak > 0 else 1.0
    while peak / slope > _INT16[1]:  # DS rounding went down: step up to stay inside int16
        slope = float(_ds(slope * (1 + 1e-6)))
    return slope, 0.0


def _window(data: np.ndarray, window: tuple[float, float] | None) -> tuple[float, float]:
    if window is not None:
        return float(window[0]), max(float(window[1]), 1.0)
    lo, hi = (float(v) for v in np.percentile(data, [1.0, 99.0]))  # robust to a few extreme pixels
    return (lo + hi) / 2, max(hi - lo, 1.0)


# ----------------------------------------------------------------------------- datasets


def _base_dataset(sop_class: str, modality: str, src: Any, geometric: bool) -> Any:
    """Attributes shared by every slice: patient/study (from ``like``), new series, equipment."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    import medrecon

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: copied names may hold any character
    ds.SOPClassUID = sop_class
    for key in _TYPE2_EMPTY:
        setattr(ds, key, "")
    if src is not None:
        for key in PATIENT_STUDY_KEYS:
            if key in src:
                ds[key] = src[key]
        if str(src.get("Modality", "")) == modality:
            for key in ACQUISITION_KEYS.get(modality, ()):
                if key in src:
                    ds[key] = src[key]
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = generate_uid()
    if geometric and "FrameOfReferenceUID" not in ds:
        ds.FrameOfReferenceUID = generate_uid()
    if modality == "MR":  # MR Image module type 1 attributes: "research mode" when unknown
        ds.ScanningSequence = ds.get("ScanningSequence") or "RM"
        ds.SequenceVariant = ds.get("SequenceVariant") or "NONE"
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.Manufacturer = "medrecon"
    ds.SoftwareVersions = medrecon.__version__
    if sop_class == SECONDARY_CAPTURE_STORAGE:
        ds.ConversionType = "WSD"  # SC Equipment module: made on a workstation
    return ds


def _slice_dataset(base: Any, k: int, pixels: np.ndarray, geo: dict[str, Any] | None) -> Any:
    import copy

    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = copy.deepcopy(base)
    ds.SOPInstanceUID = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.InstanceNumber = k + 1
    if geo is not None:
        position = geo["origin"] + k * geo["step"]
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(position @ geo["normal"]))
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    return ds


def _fill_image(ds: Any, geo: dict[str, Any] | None, slope: float, intercept: float, window, description,
                derivation, series_number) -> None:  # fmt: skip
    now = datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    ds.SeriesDate = ds.ContentDate = ds.InstanceCreationDate = date
    ds.SeriesTime = ds.ContentTime = ds.InstanceCreationTime = time
    ds.SeriesNumber = int(series_number)
    ds.SeriesDescription = str(description)[:64]
    ds.DerivationDescription = str(derivation)[:1024]
    ds.ImageType = ["DERIVED", "SECONDARY"]
    if geo is not None:
        ds.ImageOrientationPatient = [_ds(v) for v in geo["iop"]]
        ds.PixelSpacing = [_ds(v) for v in geo["spacing"]]
        ds.SliceThickness = _ds(geo["thickness"])
        ds.SpacingBetweenSlices = _ds(geo["thickness"])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = _ds(slope), _ds(intercept)
    ds.RescaleType = "HU" if ds.Modality == "CT" else "US"
    ds.WindowCenter, ds.WindowWidth = _ds(window[0]), _ds(window[1])


# ----------------------------------------------------------------------------- public


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.is_dir():
        if any(out_dir.iterdir()):
            raise InputError(f"output folder {out_dir.name} exists and is not empty; choose a new folder")
        out_dir.rmdir()  # an empty folder is replaced by the finished series in one rename
    elif out_dir.exists():
        raise InputError(f"output path {out_dir.name} is a file; give a folder for the DICOM series")


def _modality_and_class(modality: str | None, src: Any, geometric: bool) -> tuple[str, str]:
    if modality is None and src is not None and str(src.get("Modality", "")) in ("CT", "MR"):
        modality = str(src.Modality)  # the source says what this is
    if modality not in ("CT", "MR", None):
        raise InputError(f"modality {modality!r} is not 'CT', 'MR' or None")
    if modality == "CT" and geometric:
        return "CT", CT_IMAGE_STORAGE
    if modality == "MR" and geometric:
        return "MR", MR_IMAGE_STORAGE
    return modality or "OT", SECONDARY_CAPTURE_STORAGE


def write_dicom_series(
    out_dir: str | os.PathLike,
    data: np.ndarray,
    affine: np.ndarray | None,
    modality: str | None,
    like: str | os.PathLike | None,
    description: str,
    derivation: str,
    series_number: int = 900,
    window: tuple[float, float] | None = None,
) -> list[Path]:
    """Write ``data`` as a new DICOM series (one file per slice) in ``out_dir``, atomically.

    The files are written into a hidden temporary sibling folder that is renamed onto ``out_dir``
    only when every slice was written; ``out_dir`` must not exist or be empty.

    Args:
        out_dir: the series folder to create.
        data: HU for CT, intensity for MR; stored as int16 with RescaleSlope/Intercept (CT: slope
            1, 1-HU steps; MR: scaled to use the int16 range).
        affine: ``(slice, row, col, 1)`` -> LPS mm (a DICOM ``Volume.affine``; convert RAS volumes
            with :func:`medrecon.io.volumes.lps_to_ras` first), or None when the geometry is unknown.
        modality: ``"CT"``, ``"MR"``, or None (taken from ``like`` when it is CT/MR). CT/MR with an
            affine give CT/MR Image Storage; otherwise Secondary Capture without geometry.
        like: a source DICOM file or series folder whose Patient/Study/Frame of Reference modules
            are copied, or None (empty patient fields, new study).
        description: SeriesDescription (at most 64 characters kept).
        derivation: DerivationDescription, e.g. ``"medrecon 0.1.0 dps prior=mri-brain"``.
        series_number: SeriesNumber.
        window: ``(center, width)``; default: the data's 1st-99th percentile range.

    Returns:
        The written files, in slice order.

    Shapes:
        data: ``(slices, H, W)``; affine: ``(4, 4)``.
    """
    data = np.asarray(data)
    if data.ndim != 3 or data.dtype.kind not in "biuf" or min(data.shape) < 1:
        raise InputError(f"DICOM data has shape {data.shape} and dtype {data.dtype}; expected real (slices, H, W)")
    if not np.all(np.isfinite(data)):
        raise InputError("DICOM data holds NaN or Inf values; the reconstruction diverged or was not finished")
    data = data.astype(np.float64, copy=False)
    geo = _geometry(affine) if affine is not None else None
    src = _like_dataset(like)
    modality_name, sop_class = _modality_and_class(modality, src, geo is not None)
    if sop_class == SECONDARY_CAPTURE_STORAGE:
        geo = None  # SC images carry no patient geometry
    slope, intercept = _rescale(data, modality_name)
    stored = np.clip(np.round((data - intercept) / slope), *_INT16).astype(np.int16)
    base = _base_dataset(sop_class, modality_name, src, geo is not None)
    _fill_image(base, geo, slope, intercept, _window(data, window), description, derivation, series_number)

    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    names = [f"IM{k + 1:05d}.dcm" for k in range(data.shape[0])]
    with atomic_write(out_dir) as tmp:
        tmp.mkdir()
        for k, name in enumerate(names):
            _slice_dataset(base, k, stored[k], geo).save_as(tmp / name, enforce_file_format=True)
    return [out_dir / name for name in names]
