"""Write a ``(slices, H, W)`` volume as NIfTI so that :func:`medrecon.io.volumes.load_nifti` returns
the same voxels at the same patient coordinates.

:class:`medrecon.io.volumes.Volume` affines map the index ``(slice, row, col, 1)`` to millimetres
in ``space`` (``"LPS"`` for DICOM, ``"RAS"`` for NIfTI/NRRD, None without a patient frame).
NIfTI stores ``array[i, j, k]`` with a voxel->RAS affine; ``load_nifti`` reads it back as
``data = array.transpose(2, 1, 0)`` and ``affine = nifti_affine @ P`` with ``P`` the
``(s, r, c) <-> (c, r, s)`` permutation. Writing inverts exactly that: LPS -> RAS (negate x and y),
``array = data.transpose(2, 1, 0)`` and ``nifti_affine = ras_affine @ P`` (``P`` is its own inverse).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_write
from medrecon.io.guards import require_finite
from medrecon.io.volumes import _REORDER, lps_to_ras

__all__ = ["write_nifti"]

_SPACES = ("RAS", "LPS", None)
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _check(data: np.ndarray, affine: np.ndarray, space: str | None) -> tuple[np.ndarray, np.ndarray]:
    data = np.asarray(data)
    if data.ndim != 3 or data.dtype.kind not in "biuf":
        raise InputError(f"NIfTI data has shape {data.shape} and dtype {data.dtype}; expected real (slices, H, W)")
    require_finite(data, "the NIfTI image")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"affine has shape {affine.shape}; expected a finite 4x4 matrix")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError("affine is singular (a zero voxel size?); give a valid voxel->world affine")
    if space not in _SPACES:
        # the value comes from the input file's source_space attr: never quote file contents (issue 23, defect 2)
        raise InputError("the input's coordinate space (source_space) is not 'RAS' or 'LPS'; the file is damaged")
    return data, affine


def write_nifti(
    path: str | os.PathLike,
    data: np.ndarray,
    affine: np.ndarray,
    space: str | None = "RAS",
) -> Path:
    """Write a volume as NIfTI-1 (``.nii`` or ``.nii.gz``), atomically.

    Args:
        path: output file; must end in ``.nii`` or ``.nii.gz`` (nibabel picks compression from it).
        data: the volume, stored as float32.
        affine: index ``(slice, row, col, 1)`` -> mm in ``space`` (a ``Volume.affine``).
        space: ``"RAS"``, ``"LPS"`` (converted to RAS, the only NIfTI world space) or None: no
            patient frame; the affine is stored with qform/sform codes 0 ("unknown") so that no
            viewer takes it for scanner coordinates.

    Returns:
        The path written.

    Shapes:
        data: ``(slices, H, W)``; affine: ``(4, 4)``.
    """
    import nibabel as nib

    data, affine = _check(data, affine, space)
    path = Path(path)
    if not path.name.lower().endswith(_NIFTI_SUFFIXES):
        raise InputError(f"NIfTI output {path.name} must end in .nii or .nii.gz")
    ras = lps_to_ras(affine) if space == "LPS" else affine
    nifti_affine = ras @ _REORDER  # (i, j, k) = (col, row, slice) -> (slice, row, col) -> RAS
    array = np.ascontiguousarray(data.astype(np.float32, copy=False).transpose(2, 1, 0))
    img = nib.Nifti1Image(array, nifti_affine)
    code = "scanner" if space is not None else "unknown"
    # sform holds the exact affine (shears too); the qform is its closest rigid+zoom version.
    img.set_sform(nifti_affine, code=code)
    img.set_qform(nifti_affine, code=code)
    img.header.set_xyzt_units(xyz="mm")
    img.header.set_data_dtype(np.float32)
    with atomic_write(path) as tmp:
        nib.save(img, str(tmp))
    return path
