"""Image volumes from DICOM, NIfTI, NRRD and fastMRI-reconstruction files.

Every loader returns a :class:`Volume`: float32 ``data`` of shape ``(slices, H, W)`` plus a 4x4
``affine`` mapping the index ``(slice, row, col, 1)`` to millimetres in ``space``:

- DICOM: DICOM patient coordinates, **LPS** (x to the patient's left, y posterior, z superior),
  built from ImagePositionPatient / ImageOrientationPatient / PixelSpacing and the spacing of the
  sorted slice positions. ``row`` runs along the IOP column cosine, ``col`` along the row cosine.
- NIfTI: nibabel's **RAS** affine, columns reordered to ``(slice, row, col)`` for the array
  ``data = nifti[x, y, z].transpose(2, 1, 0)`` (slices along the last NIfTI axis).
- NRRD: the header's ``space`` (RAS, or LPS; LAS is converted to RAS); ``None`` for spaces that
  are not patient based (``3D-left-handed``...), where the affine holds only the spacing.

Use :func:`lps_to_ras` (or ``Volume.ras_affine``) to compare DICOM with NIfTI geometry.
``meta`` holds whitelisted, non-identifying DICOM fields only; patient names, IDs and birth dates
are never copied.
"""

from __future__ import annotations

import gzip
import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medrecon.errors import InputError
from medrecon.io.guards import check_size, max_bytes, memory_limit, nbytes_of, reader_errors

__all__ = ["DICOM_META_KEYS", "Volume", "load_dicom", "load_nifti", "load_nrrd", "load_volume", "lps_to_ras"]

_LPS_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_REORDER = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)  # (s,r,c)->(c,r,s)


def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """Convert a voxel->LPS affine to voxel->RAS (negate x and y). Its own inverse."""
    return _LPS_RAS @ np.asarray(affine, dtype=np.float64)


@dataclass(repr=False)
class Volume:
    """A 3-D image volume.

    Shapes:
        data: ``(slices, H, W)`` float32 (HU when ``kind == "hu"``).
        affine: ``(4, 4)``: index ``(slice, row, col, 1)`` -> mm in ``space``.

    Attributes:
        spacing: ``(slice, row, col)`` voxel size in mm.
        modality: ``"CT"``, ``"MR"``, another DICOM modality, or None when unknown.
        kind: ``"hu"`` (CT Hounsfield units) or ``"intensity"``.
        meta: non-identifying acquisition fields (DICOM keywords) and loader notes.
        source_path: the file or folder read.
        space: ``"LPS"``, ``"RAS"`` or None (no patient coordinate system).
    """

    data: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    modality: str | None = None
    kind: str = "intensity"
    meta: dict[str, Any] = field(default_factory=dict)
    source_path: Path | None = None
    space: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def ras_affine(self) -> np.ndarray:
        """The affine in RAS coordinates (raises when the volume has no patient space)."""
        if self.space == "RAS":
            return self.affine.copy()
        if self.space == "LPS":
            return lps_to_ras(self.affine)
        raise InputError("this volume has no patient coordinate system; its affine holds only the spacing")

    def __repr__(self) -> str:
        spacing = tuple(round(float(s), 4) for s in self.spacing)
        name = self.source_path.name if self.source_path is not None else None
        return (
            f"Volume(shape={self.shape}, spacing={spacing}, modality={self.modality!r}, kind={self.kind!r}, "
            f"space={self.space!r}, source={name!r}, meta_keys={sorted(self.meta)})"
        )


def volume_kind(modality: str | None) -> str:
    return "hu" if modality == "CT" else "intensity"


def _checked(vol: Volume) -> Volume:
    """Refuse geometry no consumer can use: a non-finite affine or a zero/non-finite voxel size."""
    name = vol.source_path.name if vol.source_path is not None else "the volume"
    if not np.isfinite(vol.affine).all() or abs(np.linalg.det(vol.affine[:3, :3])) < 1e-12:
        raise InputError(f"{name}: the voxel-to-world geometry is not finite or is singular (a zero voxel size?); "
                         "the header is damaged")
    if not all(np.isfinite(s) and s > 0 for s in vol.spacing):
        raise InputError(f"{name}: voxel size {tuple(vol.spacing)} is not positive and finite; the header is damaged")
    return vol


# ============================================================================ NIfTI

_NIFTI_NAMES = (".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz")


def _nib_image(path: Path) -> Any:
    """nibabel image; files without a NIfTI extension are parsed from their bytes (single-file NIfTI)."""
    import nibabel as nib

    if path.name.lower().endswith(_NIFTI_NAMES):
        return nib.load(str(path))
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        cap = max_bytes()
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
            raw = gz.read(cap + 1)  # bounded: a gzip bomb stops at the memory cap
        if len(raw) > cap:
            check_size(len(raw), "decompressed NIfTI", path.name)
    cls = nib.Nifti2Image if raw[4:8] in (b"n+2\0", b"ni2\0") else nib.Nifti1Image
    return cls.from_bytes(raw)


def load_nifti(path: str | os.PathLike, modality: str | None = None) -> Volume:
    """Load a NIfTI-1/2 file (``.nii``, ``.nii.gz``, ``.hdr/.img``) with scaling applied.

    ``modality`` is the caller's statement of what the file holds (NIfTI does not say);
    ``"CT"`` marks the data as HU.
    """
    path = Path(path)
    try:
        img = _nib_image(path)
        shape = img.shape
        if len(shape) == 4 and shape[3] == 1:
            img = img.slicer[..., 0]
            shape = img.shape
        if len(shape) not in (2, 3):
            raise InputError(f"{path.name} has shape {shape}; medrecon needs a 2-D or 3-D NIfTI image")
        # nibabel reads only the header until get_fdata: check the size the header claims first.
        check_size(nbytes_of(shape, 4), f"NIfTI image {tuple(shape)}", path.name)
        with memory_limit():
            data = np.asarray(img.get_fdata(dtype=np.float32))
        zooms = [float(z) for z in img.header.get_zooms()[: len(shape)]]
        affine = np.asarray(img.affine, dtype=np.float64)
    except InputError:
        raise
    except Exception as exc:  # nibabel raises many types for damaged / truncated files
        raise InputError(f"cannot read NIfTI file {path.name} ({type(exc).__name__}); it may be truncated") from exc
    if data.ndim == 2:
        data, zooms = data[:, :, None], [*zooms, 1.0]
    data = np.ascontiguousarray(data.transpose(2, 1, 0))
    return _checked(Volume(
        data=data,
        affine=affine @ _REORDER,
        spacing=(zooms[2], zooms[1], zooms[0]),
        modality=modality,
        kind=volume_kind(modality),
        meta={"format": "nifti"},
        source_path=path,
        space="RAS",
    ))


# ============================================================================ DICOM

#: Whitelisted DICOM keywords copied into ``Volume.meta`` (nothing that identifies a person).
DICOM_META_KEYS = (
    "Modality", "Manufacturer", "ManufacturerModelName", "MagneticFieldStrength", "KVP",
    "SliceThickness", "SpacingBetweenSlices", "PixelSpacing", "ConvolutionKernel", "XRayTubeCurrent",
    "Exposure", "ExposureTime", "RepetitionTime", "EchoTime", "InversionTime", "FlipAngle",
    "EchoTrainLength", "ScanningSequence", "SequenceVariant", "MRAcquisitionType", "ImageType",
    "BodyPartExamined", "PhotometricInterpretation", "BitsAllocated", "BitsStored",
    "PixelRepresentation", "RescaleType", "Rows", "Columns", "NumberOfFrames", "SOPClassUID",
)  # fmt: skip


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_plain(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if isinstance(value, int) else float(value)
    return str(value)


def _dicom_meta(ds: Any, n_slices: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"format": "dicom", "n_slices": n_slices}
    for key in DICOM_META_KEYS:
        value = ds.get(key)
        if value is not None and value != "":
            meta[key] = _plain(value)
    tsuid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsuid is not None:
        meta["TransferSyntaxUID"] = str(tsuid)
        meta["TransferSyntax"] = str(getattr(tsuid, "name", tsuid))
    return meta


def _dcmread(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise InputError(f"{path.name} is not a DICOM file (no 'DICM' preamble)") from exc
    except Exception as exc:
        raise InputError(f"cannot read DICOM file {path.name} ({type(exc).__name__}); it may be truncated") from exc


def _decode(ds: Any, name: str) -> np.ndarray:
    """Decoded pixel array (JPEG2000 etc. through pylibjpeg); any failure is an InputError."""
    if "PixelData" not in ds:
        raise InputError(f"{name} holds no pixel data; give an image file")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise InputError(f"{name} is a colour image; medrecon reads greyscale CT/MR only")
    try:
        # The codec trusts the sizes in its own stream (a JPEG 2000 SIZ marker may claim a huge image that
        # Rows/Columns do not); memory_limit makes such an allocation fail instead of exhausting the machine.
        with memory_limit():
            return np.asarray(ds.pixel_array)
    except Exception as exc:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = getattr(ts, "name", ts)
        hint = ("the file may be truncated, or need a decoder (pip install pylibjpeg pylibjpeg-openjpeg)"
                if getattr(ts, "is_compressed", False) else "the file is truncated or damaged")
        raise InputError(
            f"cannot decode the DICOM pixel data of {name} ({ts_name}, {type(exc).__name__}); {hint}"
        ) from exc


@dataclass
class _Frame:
    """One 2-D image of a series or multi-frame file, before sorting."""

    position: np.ndarray | None
    orientation: np.ndarray | None
    pixel_spacing: tuple[float, float]
    slope: float
    intercept: float
    order: float
    pixels: Callable[[], np.ndarray]


def _floats(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.size == n and np.all(np.isfinite(arr)) else None


def _float_or_none(value: Any) -> float | None:
    """A finite float from a DICOM DS/IS value, or None for missing or garbage values."""
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return out if np.isfinite(out) else None


def _rescale(item: Any) -> tuple[float, float]:
    slope = _float_or_none(item.get("RescaleSlope")) if item is not None else None
    intercept = _float_or_none(item.get("RescaleIntercept")) if item is not None else None
    return (slope if slope is not None and slope != 0 else 1.0, intercept if intercept is not None else 0.0)


def _spacing2(value: Any) -> tuple[float, float]:
    arr = _floats(value, 2)
    return (float(arr[0]), float(arr[1])) if arr is not None and np.all(arr > 0) else (1.0, 1.0)


def _frames_from_series(datasets: Sequence[tuple[Path, Any]]) -> list[_Frame]:
    frames = []
    for i, (p, ds) in enumerate(datasets):
        inst = ds.get("InstanceNumber")
        slope, intercept = _rescale(ds)
        frames.append(
            _Frame(
                position=_floats(ds.get("ImagePositionPatient"), 3),
                orientation=_floats(ds.get("ImageOrientationPatient"), 6),
                pixel_spacing=_spacing2(ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")),
                slope=slope,
                intercept=intercept,
                order=float(inst) if inst not in (None, "") else float(i),
                pixels=lambda ds=ds, name=p.name: _decode(ds, name),
            )
        )
    return frames


def _group_item(ds: Any, i: int, seq: str) -> Any:
    """Functional-group item ``seq`` for frame ``i``: per-frame first, then shared."""
    for groups_name, index in (("PerFrameFunctionalGroupsSequence", i), ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(groups_name)
        if groups is not None and len(groups) > index:
            sub = groups[index].get(seq)
            if sub is not None and len(sub) > 0:
                return sub[0]
    return None


def _frames_from_multiframe(ds: Any, name: str) -> list[_Frame]:
    n = int(ds.get("NumberOfFrames", 1) or 1)
    pixel_bytes = len(ds.get("PixelData") or b"")
    if n < 1 or n > max(pixel_bytes, 1):
        # Every frame takes at least one byte of pixel data, compressed or not; a larger count is a damaged
        # or crafted header, and looping over it would look like a hang.
        raise InputError(f"{name}: NumberOfFrames {n} does not fit {pixel_bytes} bytes of pixel data; "
                         "the file is damaged")
    cache: dict[str, np.ndarray] = {}

    def frame(i: int) -> np.ndarray:
        if "all" not in cache:
            arr = _decode(ds, name)
            if arr.ndim < 2 or arr.size != n * arr.shape[-2] * arr.shape[-1]:
                raise InputError(f"{name}: NumberOfFrames is {n} but the pixel data holds {arr.shape}; "
                                 "the file is damaged")
            cache["all"] = arr.reshape((n, *arr.shape[-2:]))
        return cache["all"][i]

    thickness = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
    frames = []
    for i in range(n):
        pos_item = _group_item(ds, i, "PlanePositionSequence")
        ori_item = _group_item(ds, i, "PlaneOrientationSequence")
        pix_item = _group_item(ds, i, "PixelMeasuresSequence")
        resc_item = _group_item(ds, i, "PixelValueTransformationSequence")
        position = _floats(pos_item.get("ImagePositionPatient"), 3) if pos_item is not None else None
        orientation = _floats((ori_item or ds).get("ImageOrientationPatient"), 6)
        if position is None and n > 1 and orientation is not None:
            # Legacy multi-frame: frames stacked along the normal from the top-level position.
            origin = _floats(ds.get("ImagePositionPatient"), 3)
            step = _float_or_none(thickness)
            if origin is not None and step:
                position = origin + i * step * np.cross(orientation[:3], orientation[3:])
        spacing_src = (pix_item or ds).get("PixelSpacing") or ds.get("PixelSpacing")
        slope, intercept = _rescale(resc_item if resc_item is not None else ds)
        frames.append(
            _Frame(position, orientation, _spacing2(spacing_src), slope, intercept, float(i), lambda i=i: frame(i))
        )
    return frames


def _sort_frames(frames: list[_Frame], fallback_step: float) -> tuple[list[_Frame], np.ndarray, str | None]:
    """Sort along the slice normal; return frames, the (slice,row,col) LPS affine and its space."""
    ps = frames[0].pixel_spacing
    geometric = all(f.position is not None and f.orientation is not None for f in frames)
    if not geometric:
        frames = sorted(frames, key=lambda f: f.order)
        return frames, np.diag([fallback_step, ps[0], ps[1], 1.0]), None
    ori = frames[0].orientation
    if any(np.max(np.abs(f.orientation - ori)) > 1e-4 for f in frames):
        raise InputError("DICOM slices have different orientations; give a single series (one stack)")
    row_cos, col_cos = ori[:3], ori[3:]
    normal = np.cross(row_cos, col_cos)
    dist = np.array([float(f.position @ normal) for f in frames])
    idx = np.argsort(dist, kind="stable")
    frames, dist = [frames[i] for i in idx], dist[idx]
    if len(frames) > 1:
        gaps = np.diff(dist)
        if np.min(gaps) < 1e-3:
            raise InputError("two DICOM slices share a position (several series or time points?); give one stack")
        mean_gap = float(np.mean(gaps))
        if np.max(np.abs(gaps - mean_gap)) > max(0.01 * mean_gap, 1e-3):
            raise InputError(
                f"DICOM slice spacing varies from {gaps.min():.3g} to {gaps.max():.3g} mm (missing slices?); "
                "give a complete, evenly spaced series"
            )
        slice_vec = (frames[-1].position - frames[0].position) / (len(frames) - 1)
    else:
        slice_vec = normal * fallback_step
    affine = np.eye(4)
    affine[:3, 0] = slice_vec
    affine[:3, 1] = col_cos * ps[0]  # row index advances along the column cosine by PixelSpacing[0]
    affine[:3, 2] = row_cos * ps[1]  # column index advances along the row cosine by PixelSpacing[1]
    affine[:3, 3] = frames[0].position
    return frames, affine, "LPS"


def _check_pixels_size(frames: list[_Frame], ds0: Any, name: str) -> None:
    """Refuse, from Rows x Columns x frames in the header, a volume over the memory cap before decoding.

    Compressed pixel data (JPEG 2000, RLE) may decode to far more than the file's size, so the file
    size alone bounds nothing; the header's matrix does (decoding to any other size fails).
    """
    rows, cols = int(ds0.get("Rows") or 0), int(ds0.get("Columns") or 0)
    if rows < 1 or cols < 1:
        raise InputError(f"{name}: DICOM Rows/Columns are missing or zero; the file is damaged")
    # float64 while decoding and rescaling is the largest copy (8 bytes per pixel).
    check_size(nbytes_of((len(frames), rows, cols), 8), f"DICOM pixels ({len(frames)}, {rows}, {cols})", name)


def _assemble(frames: list[_Frame], ds0: Any, path: Path) -> Volume:
    _check_pixels_size(frames, ds0, path.name)
    step = _float_or_none(ds0.get("SpacingBetweenSlices") or ds0.get("SliceThickness"))
    fallback_step = step if step is not None and step > 0 else 1.0
    frames, affine, space = _sort_frames(frames, fallback_step)
    first = frames[0].pixels()
    data = np.empty((len(frames), *first.shape[-2:]), dtype=np.float32)
    for k, f in enumerate(frames):
        px = first if k == 0 else f.pixels()
        if px.shape[-2:] != data.shape[1:]:
            raise InputError(f"DICOM slices have different sizes {px.shape} and {data.shape[1:]}; give one series")
        # Modality LUT (PS3.3 C.11.1): stored value * RescaleSlope + RescaleIntercept (HU for CT).
        data[k] = px.astype(np.float32) * np.float32(f.slope) + np.float32(f.intercept)
    modality = str(ds0.get("Modality")) if ds0.get("Modality") else None
    spacing = (float(np.linalg.norm(affine[:3, 0])), *frames[0].pixel_spacing)
    return _checked(Volume(data, affine, spacing, modality, volume_kind(modality), _dicom_meta(ds0, len(frames)), path, space))


def _read_folder(folder: Path) -> list[tuple[Path, Any]]:
    datasets = []
    files = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and p.is_file()]
    # Each file is read whole (pixel data included); the folder must fit the memory cap.
    check_size(sum(p.stat().st_size for p in files), f"DICOM folder of {len(files)} files", folder.name)
    for p in files:
        with open(p, "rb") as fh:
            if fh.read(132)[128:132] != b"DICM":
                continue
        ds = _dcmread(p)
        if "PixelData" in ds or ds.get("Rows"):
            datasets.append((p, ds))
    if not datasets:
        raise InputError(f"no DICOM images in folder {folder.name}; give a folder holding one DICOM series")
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in datasets}
    if len(series) > 1:
        raise InputError(f"folder {folder.name} holds {len(series)} DICOM series; give a folder with one series")
    return datasets


def load_dicom(path: str | os.PathLike) -> Volume:
    """Load a DICOM image file, an Enhanced (multi-frame) CT/MR file, or a series folder.

    Slices are sorted by position along the slice normal (never by file name); HU for CT is
    ``stored * RescaleSlope + RescaleIntercept`` (per frame in Enhanced files). The affine is
    in LPS (see module docstring).
    """
    path = Path(path)
    # Pixel decoding happens lazily inside _assemble: every failure there (a truncated JPEG 2000
    # stream, a frame count that does not match the data, garbage numbers) ends as an InputError.
    with reader_errors(path.name, "DICOM"):
        return _load_dicom(path)


def _load_dicom(path: Path) -> Volume:
    if path.is_dir():
        datasets = _read_folder(path)
        if len(datasets) == 1 and int(datasets[0][1].get("NumberOfFrames", 1) or 1) > 1:
            return _assemble(_frames_from_multiframe(datasets[0][1], datasets[0][0].name), datasets[0][1], path)
        if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for _, ds in datasets):
            raise InputError(f"folder {path.name} mixes multi-frame and other DICOM files; give one file or series")
        return _assemble(_frames_from_series(datasets), datasets[0][1], path)
    if not path.is_file():
        raise InputError(f"DICOM path {path} does not exist")
    ds = _dcmread(path)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return _assemble(_frames_from_multiframe(ds, path.name), ds, path)
    return _assemble(_frames_from_series([(path, ds)]), ds, path)


# ============================================================================ NRRD

_NRRD_TYPES = {
    "i1": ("signed char", "int8", "int8_t"),
    "u1": ("uchar", "unsigned char", "uint8", "uint8_t"),
    "i2": ("short", "short int", "signed short", "signed short int", "int16", "int16_t"),
    "u2": ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
    "i4": ("int", "signed int", "int32", "int32_t"),
    "u4": ("uint", "unsigned int", "uint32", "uint32_t"),
    "i8": ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t"),
    "u8": ("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"),
    "f4": ("float",),
    "f8": ("double",),
}
_NRRD_DTYPE = {name: code for code, names in _NRRD_TYPES.items() for name in names}
_NRRD_SPACES = {
    "right-anterior-superior": "RAS", "ras": "RAS", "left-posterior-superior": "LPS", "lps": "LPS",
    "left-anterior-superior": "LAS", "las": "LAS",
}  # fmt: skip
_MAX_HEADER = 1 << 20
_MAX_NRRD_FILES = 100_000  # one file per slice of even the largest volumes


def _nrrd_header(path: Path) -> tuple[dict[str, str], list[str], int]:
    """Fields, the ``LIST`` file names (if any) and the byte offset of attached data."""
    with open(path, "rb") as fh:
        raw = fh.read(_MAX_HEADER)
    if not raw.startswith(b"NRRD000"):
        raise InputError(f"{path.name} is not an NRRD file (no 'NRRD000x' magic)")
    fields: dict[str, str] = {}
    listed: list[str] = []
    lines = raw.split(b"\n")
    offset, in_list = len(lines[0]) + 1, False
    for line in lines[1:]:
        offset += len(line) + 1
        text = line.rstrip(b"\r").decode("latin-1")
        if in_list:
            if text.strip():
                listed.append(text.strip())
            continue
        if text.startswith("#") or ":=" in text:
            continue  # comments, key/value pairs
        if not text.strip():
            return fields, listed, offset  # blank line: attached data follows
        key, sep, value = text.partition(": ")
        if not sep:
            # The line is not quoted: header text can hold anything, identifiers included (issue 23).
            raise InputError(f"{path.name}: the NRRD header has a line that is not 'key: value'")
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() in ("data file", "datafile") and value.strip().upper().startswith("LIST"):
            in_list = True
    return fields, listed, -1


def _inside(base: Path, files: list[Path], name: str) -> list[Path]:
    """``files`` (already joined to ``base``), each checked to resolve (symlinks followed) inside ``base``.

    ``base`` is the header's folder. The files are not joined to it again: with a relative header path
    (``../data/quarter.nhdr``) a second join would double the folder and refuse a legitimate file.

    A detached header names its data files; an absolute path, ``..`` or a symlink out of the folder would
    let a crafted header read any local file (``data file: /etc/passwd``) into an image.
    """
    root = base.resolve()
    for f in files:
        real = Path(f).resolve()
        if real != root and root not in real.parents:
            raise InputError(f"{name}: the NRRD 'data file' must name files inside the header's folder; "
                             "paths out of it (absolute, '..', or a symlink) are refused")
    return files


def _nrrd_files(path: Path, fields: dict[str, str], listed: list[str], ndim: int) -> tuple[list[Path], int]:
    """Data files and the number of axes each holds (detached headers; NRRD spec 'data file').

    Every data file must lie inside the header's folder (:func:`_inside`).
    """
    spec = fields.get("data file") or fields.get("datafile")
    base = path.parent
    if spec is None:
        return [path], ndim
    files, subdim = _nrrd_named_files(path, spec, listed, ndim)
    return _inside(base, files, path.name), subdim


def _nrrd_named_files(path: Path, spec: str, listed: list[str], ndim: int) -> tuple[list[Path], int]:
    base = path.parent
    tokens = spec.split()
    if tokens[0].upper() == "LIST":
        subdim = int(tokens[1]) if len(tokens) > 1 else ndim - 1
        return [base / name for name in listed], subdim
    if "%" in tokens[0] and len(tokens) in (4, 5):
        lo, hi, step = (int(t) for t in tokens[1:4])
        if step == 0:
            raise InputError(f"{path.name}: 'data file' step is 0")
        subdim = int(tokens[4]) if len(tokens) == 5 else ndim - 1
        numbers = range(lo, hi + (1 if step > 0 else -1), step)
        if len(numbers) > _MAX_NRRD_FILES:  # checked before the list is built: "0 999999999999 1" must not hang
            raise InputError(f"{path.name}: 'data file' names {len(numbers)} files; at most {_MAX_NRRD_FILES} "
                             "are read")
        return [base / (tokens[0] % i) for i in numbers], subdim
    return [base / spec], ndim


def _nrrd_geometry(fields: dict[str, str], ndim: int, name: str) -> tuple[np.ndarray, str | None]:
    """Index (fastest axis first) -> world affine columns, and the space name."""
    space = _NRRD_SPACES.get(fields.get("space", "").lower())
    if "space directions" in fields:
        vecs = re.findall(r"\(([^)]*)\)|none", fields["space directions"])
        dirs = [np.array([float(v) for v in s.split(",")]) if s else None for s in vecs]
        if len(dirs) != ndim or any(d is None or d.size != 3 for d in dirs):
            raise InputError(f"{name}: 'space directions' must give one 3-vector per axis")
        origin_text = fields.get("space origin", "(0,0,0)").strip("() ")
        origin = np.array([float(v) for v in origin_text.split(",")])
        columns = np.stack(dirs, axis=1)
    else:
        sp = [float(v) for v in fields.get("spacings", " ".join(["1"] * ndim)).split()]
        if len(sp) != ndim:
            raise InputError(f"{name}: 'spacings' must give one value per axis")
        sp = [v if np.isfinite(v) and v > 0 else 1.0 for v in sp]
        columns, origin, space = np.eye(3)[:, :ndim] * sp, np.zeros(3), None
    if space == "LAS":  # express in RAS: negate x
        columns, origin, space = columns * [[-1], [1], [1]], origin * [-1, 1, 1], "RAS"
    if ndim == 2:
        normal = np.cross(columns[:, 0], columns[:, 1])
        columns = np.column_stack([columns, normal / (np.linalg.norm(normal) or 1.0)])
    affine = np.eye(4)
    affine[:3, :3] = columns[:, ::-1]  # NRRD axis order (fastest first) -> (slice, row, col)
    affine[:3, 3] = origin
    return affine, space


def _read_nrrd_file(p: Path, offset: int, nbytes: int, encoding: str, skip: int, name: str) -> bytes:
    if not p.is_file():
        raise InputError(f"{name}: data file {p.name} does not exist")
    size = p.stat().st_size
    if encoding == "raw":
        start = size - nbytes if skip == -1 else offset + max(skip, 0)
        if start < 0 or size - start < nbytes:
            raise InputError(f"{name}: data file {p.name} has {size} bytes, needs {nbytes}; it is truncated")
        with open(p, "rb") as fh:
            fh.seek(start)
            return fh.read(nbytes)
    with open(p, "rb") as fh:  # gzip: decompress at most nbytes + 1 (no decompression bombs)
        fh.seek(max(offset, 0))
        try:
            data = gzip.GzipFile(fileobj=fh).read(nbytes + 1)
        except (OSError, EOFError) as exc:
            raise InputError(f"{name}: gzip data in {p.name} is damaged ({exc})") from exc
    if len(data) != nbytes:
        raise InputError(f"{name}: data file {p.name} holds {len(data)} bytes, needs {nbytes}")
    return data


def load_nrrd(path: str | os.PathLike, modality: str | None = None) -> Volume:
    """Load a 2-D/3-D NRRD (``.nhdr`` detached or ``.nrrd`` attached; raw or gzip encoding).

    Supports ``type``, ``dimension``, ``sizes``, ``spacings`` / ``space directions`` +
    ``space origin``, ``endian``, ``encoding`` (raw, gzip), ``byte skip`` and ``data file`` with
    a single name, a ``<format> <min> <max> <step> [<subdim>]`` pattern or ``LIST [<subdim>]``.
    File sizes are checked before any data is read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"NRRD file {path.name} does not exist")
    with reader_errors(path.name, "NRRD"):  # garbage numbers, bad format strings, unreadable data files
        return _load_nrrd(path, modality)


def _load_nrrd(path: Path, modality: str | None) -> Volume:
    fields, listed, offset = _nrrd_header(path)
    name = path.name
    try:
        ndim = int(fields["dimension"])
        sizes = [int(v) for v in fields["sizes"].split()]
        dtype = np.dtype(_NRRD_DTYPE[fields["type"].lower()])
    except KeyError as exc:
        raise InputError(
            f"{name}: NRRD field {exc} missing or unsupported; need dimension, sizes and a numeric type"
        ) from exc
    except ValueError as exc:
        raise InputError(f"{name}: NRRD dimension/sizes are not integers") from exc
    if ndim not in (2, 3) or len(sizes) != ndim or min(sizes) < 1:
        raise InputError(f"{name}: NRRD sizes {sizes} are not a 2-D or 3-D image")
    encoding = fields.get("encoding", "raw").lower()
    encoding = {"gz": "gzip"}.get(encoding, encoding)
    if encoding not in ("raw", "gzip"):
        raise InputError(f"{name}: NRRD encoding '{encoding}' is not supported; convert to raw or gzip")
    if int(fields.get("line skip", fields.get("lineskip", "0"))) != 0:
        raise InputError(f"{name}: NRRD 'line skip' is not supported; rewrite the data without a text preamble")
    dtype = dtype.newbyteorder("<" if fields.get("endian", "little").lower() == "little" else ">")
    check_size(nbytes_of(sizes, max(4, dtype.itemsize)), f"NRRD image {sizes}", name)
    files, subdim = _nrrd_files(path, fields, listed, ndim)
    per_file = int(np.prod(sizes[:subdim])) * dtype.itemsize
    if len(files) * per_file != int(np.prod(sizes)) * dtype.itemsize:
        raise InputError(f"{name}: {len(files)} data files of {per_file} bytes do not make up sizes {sizes}")
    attached = len(files) == 1 and files[0] == path
    if attached and offset < 0:
        raise InputError(f"{name}: NRRD header has no 'data file' and no attached data")
    skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
    chunks = [_read_nrrd_file(p, offset if attached else 0, per_file, encoding, skip, name) for p in files]
    data = np.frombuffer(b"".join(chunks), dtype=dtype).reshape(sizes[::-1]).astype(np.float32)
    if ndim == 2:
        data = data[None]
    affine, space = _nrrd_geometry(fields, ndim, name)
    spacing = tuple(float(np.linalg.norm(affine[:3, i])) for i in range(3))
    meta = {"format": "nrrd", "type": fields["type"], "nrrd_space": fields.get("space")}
    return _checked(Volume(data, affine, spacing, modality, volume_kind(modality), meta, path, space))  # type: ignore[arg-type]


# ============================================================================ dispatch


def load_volume(path: str | os.PathLike, modality: str | None = None) -> Volume:
    """Load an image volume, choosing the reader from the file's content (not its name).

    DICOM file or series folder, NIfTI (``.nii[.gz]``, ``.hdr``), NRRD (``.nhdr``/``.nrrd``) or
    a fastMRI HDF5 reconstruction/target. ``modality`` overrides the file's own (NIfTI, NRRD
    and HDF5 files do not record one).
    """
    from medrecon.io.sandbox import isolated

    path = Path(path)
    # Parsed in a forked child (medrecon.io.sandbox): a codec or libhdf5 hang or crash becomes an InputError.
    from medrecon.io import privacy

    try:
        vol = isolated(_load_any_guarded, path, modality, name=path.name, what="image")
    finally:
        privacy.register_inputs([path])  # a DICOM image's identifiers join the privacy layer, read or not
    if vol.data.size == 0:
        raise InputError(f"{path.name} holds an empty image {vol.data.shape}")
    if not np.isfinite(vol.data).all():
        # NaN/Inf voxels (a NaN scl_slope, float DICOM with NaN) would propagate silently into k-space,
        # sinograms and training batches; refuse them here, where the file is still known.
        raise InputError(f"{path.name} holds NaN or Inf voxel values; fix or mask them before using the image")
    if modality is not None:
        vol.modality, vol.kind = modality, volume_kind(modality)
    return vol


def _load_any_guarded(path: Path, modality: str | None) -> Volume:
    with reader_errors(path.name, "image"):
        return _load_any(path, modality)


def _load_any(path: Path, modality: str | None) -> Volume:
    from medrecon.io import formats

    spec = formats.detect(path)
    if spec.read_image is None:
        raise InputError(f"{path.name} is a {spec.name} file, not an image; medrecon reads images from DICOM, "
                         "NIfTI, NRRD and fastMRI .h5")
    return spec.read_image(path, modality)
