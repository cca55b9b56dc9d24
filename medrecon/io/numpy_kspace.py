"""k-space from ``.npy`` / ``.npz`` files, whose axis order must be stated (``--axes``).

Axis letters: ``S`` slices, ``C`` coils, ``H`` readout (kx), ``W`` phase encode (ky); ``H`` and ``W``
are required, ``S`` and ``C`` optional. The array must be complex and centred (DC at ``N//2``),
as fastMRI stores it. An ``.npz`` holds it under ``kspace`` (or as its only array) and may carry a
``mask`` of shape ``(W,)`` or ``(H, W)``.

Non-Cartesian k-space (issue 20) is an ``.npz`` with a ``traj`` member (the key decides; ``--axes`` is
then not needed and ignored): ``kspace`` ``(S, C, M)`` or ``(C, M)`` complex, ``traj`` ``(..., 2)`` whose
leading axes flatten (C order) to ``M``, ``traj_convention`` (``"radians"`` by default, ``"cycles"``, or
``"bart"`` with ``traj`` ``(3, readout, spokes)``), ``matrix`` ``(H, W)`` (required: the image size cannot
be told from samples), and optionally ``dcf`` ``(M,)``, ``true_maps`` ``(C, H, W)``, ``maps`` ``(S, C, H, W)`` or ``(C, H, W)`` (precomputed coil maps, used by ``--maps auto``), ``target``
``(S, H, W)``. :func:`write_noncartesian_npz` writes one; :func:`read_numpy_noncartesian` reads it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from medrecon.errors import InputError
from medrecon.io.guards import check_size, nbytes_of, reader_errors

if TYPE_CHECKING:  # the annotation only: medrecon.io.noncartesian is imported where it is used
    from medrecon.io.noncartesian import NonCartesianKspace

__all__ = ["is_noncartesian_npz", "read_numpy_kspace", "read_numpy_noncartesian", "write_noncartesian_npz"]


def _npz_member_shape(z, key: str, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npz`` member's ``.npy`` header, read without decompressing the array."""
    with z.zip.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
    return tuple(int(d) for d in shape), np.dtype(dtype)


def _check_member(z, key: str, name: str, what: str) -> None:
    shape, dtype = _npz_member_shape(z, key, name)
    # Size in memory after the cast to complex64 (the largest copy the reader makes).
    check_size(nbytes_of(shape, max(8, dtype.itemsize)), f"{what} {shape} {dtype}", name)


def read_numpy_kspace(path, axes: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Return k-space ``(S, C, H, W)`` complex64 and an optional mask."""
    path = Path(path)
    if not axes:
        raise InputError(f"{path.name}: numpy k-space needs --axes naming its axes, e.g. --axes SCHW or --axes HWC")
    axes = axes.upper()
    if sorted(set(axes)) != sorted(axes) or not set(axes) <= set("SCHW") or not {"H", "W"} <= set(axes):
        raise InputError(f"--axes {axes!r} must use each of S, C, H, W at most once and include H and W")
    mask = None
    with reader_errors(path.name, "numpy"):
        if _is_zip(path):
            with np.load(path, allow_pickle=False) as z:
                names = list(z.keys())
                key = "kspace" if "kspace" in names else (names[0] if len(names) == 1 else None)
                if key is None:
                    raise InputError(f"{path.name} has several arrays and none named 'kspace'")
                # Shapes from the member headers first: a compressed member may expand to terabytes.
                _check_member(z, key, path.name, "k-space")
                arr = z[key]
                if "mask" in names:
                    _check_member(z, "mask", path.name, "mask")
                    mask = z["mask"].astype(bool)
        else:
            arr = np.load(path, allow_pickle=False, mmap_mode="r")  # memory-mapped: only the header is read
        check_size(nbytes_of(arr.shape, 8), f"k-space {arr.shape} (as complex64)", path.name)
        return _reorder(arr, axes, mask, path.name)


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _reorder(arr: np.ndarray, axes: str, mask: np.ndarray | None, name: str) -> tuple:
    """``arr`` with axes ``axes`` -> ``(S, C, H, W)`` complex64, after the checks."""
    path = Path(name)
    if arr.ndim != len(axes):
        raise InputError(f"{path.name} has {arr.ndim} dimensions but --axes {axes} names {len(axes)}")
    if not np.iscomplexobj(arr):
        raise InputError(f"{path.name}: k-space must be complex, got {arr.dtype}")
    for a in "SC":
        if a not in axes:
            arr = arr[..., None]
            axes += a
    arr = np.transpose(arr, [axes.index(a) for a in "SCHW"]).astype(np.complex64)
    if not np.isfinite(arr).all():
        raise InputError(f"{path.name}: k-space contains NaN or Inf values")
    return np.ascontiguousarray(arr), mask


# ----------------------------------------------------------------------------- non-Cartesian .npz

_NONCART_KEYS = ("kspace", "traj", "traj_convention", "matrix", "dcf", "true_maps", "target", "maps")
_MAX_CONVENTION_BYTES = 64  # a convention name is a short word; a huge string member is not one


def is_noncartesian_npz(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip (``.npz``) archive with a ``traj.npy`` member (a damaged zip: False, and the
    Cartesian reader reports the damage as before)."""
    path = Path(path)
    try:
        if not _is_zip(path):
            return False
        with zipfile.ZipFile(path) as z:
            return "traj.npy" in z.namelist()
    except Exception:  # noqa: BLE001 - a probe: any damaged archive is simply "not non-Cartesian"
        return False


def _convention(z: Any, name: str) -> str:
    if "traj_convention" not in z.files:
        return "radians"
    shape, dtype = _npz_member_shape(z, "traj_convention", name)
    # Checked from the member header: a crafted '<U999999999' would otherwise be allocated before we look.
    if dtype.kind not in "US" or nbytes_of(shape, dtype.itemsize) > _MAX_CONVENTION_BYTES or int(np.prod(shape)) != 1:
        raise InputError(f"{name}: 'traj_convention' must be one short string such as 'radians' or 'cycles'")
    value = z["traj_convention"].reshape(-1)[0]
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def read_numpy_noncartesian(path: str | os.PathLike) -> "NonCartesianKspace":
    """Read non-Cartesian multi-coil k-space and its trajectory from an ``.npz`` archive (module docstring).

    Every member's shape and dtype are read from its ``.npy`` header and checked against
    ``MEDRECON_MAX_GB`` before it is decompressed.

    Returns:
        :class:`medrecon.io.noncartesian.NonCartesianKspace`: ``kspace`` ``(S, C, M)`` complex64, ``traj``
        ``(M, 2)`` float32 radians, ``matrix`` ``(H, W)``, and ``dcf`` ``(M,)``, ``true_maps`` ``(C, H, W)``,
        ``target`` ``(S, H, W)`` when present (their shapes are checked by
        :func:`medrecon.io.noncartesian.to_loaded_input`).

    Raises:
        InputError: a missing ``kspace``/``traj``/``matrix``, a ``mask`` (Cartesian only), a bad trajectory
            (NaN/Inf, shape, out of range), a damaged archive, or a member over the memory cap.
    """
    from medrecon.io.noncartesian import NonCartesianKspace, checked_kspace, checked_matrix, checked_trajectory

    path = Path(path)
    name = path.name
    with reader_errors(name, "numpy"), np.load(path, allow_pickle=False) as z:
        names = set(z.files)
        for key in ("kspace", "traj"):
            if key not in names:
                raise InputError(f"{name}: non-Cartesian k-space needs a '{key}' array next to 'traj'/'kspace'")
        if "matrix" not in names:
            raise InputError(f"{name}: non-Cartesian k-space needs 'matrix', the image size (H, W), next to 'traj'")
        if "mask" in names:
            raise InputError(f"{name} holds both 'traj' and 'mask'; a mask belongs to Cartesian k-space only")
        for key in _NONCART_KEYS:
            if key in names and key != "traj_convention":
                _check_member(z, key, name, key)
        convention = _convention(z, name)
        matrix = checked_matrix(z["matrix"], name)
        kspace = checked_kspace(z["kspace"], name)
        traj = checked_trajectory(z["traj"], convention, matrix, name)
        return NonCartesianKspace(
            kspace=kspace, traj=traj, matrix=matrix,
            dcf=z["dcf"] if "dcf" in names else None,
            true_maps=z["true_maps"] if "true_maps" in names else None,
            target=z["target"] if "target" in names else None,
            maps=z["maps"] if "maps" in names else None,
            attrs={"source_format": "npz", "traj_convention": convention},
        )


def _real_array(a: Any, what: str) -> np.ndarray:
    """A real float32 copy of ``a``; a complex array (BART keeps coordinates as complex) must be real-valued."""
    a = np.asarray(a)
    if a.dtype.kind == "c":
        if np.any(a.imag != 0):
            raise InputError(f"{what} must be real (complex values with zero imaginary part are accepted)")
        a = a.real
    if a.dtype.kind not in "iuf":
        raise InputError(f"{what} must be numeric, got {a.dtype}")
    return a.astype(np.float32)


def write_noncartesian_npz(
    path: str | os.PathLike,
    kspace: np.ndarray,
    traj: np.ndarray,
    matrix: tuple[int, int],
    convention: str = "radians",
    dcf: Optional[np.ndarray] = None,
    true_maps: Optional[np.ndarray] = None,
    target: Optional[np.ndarray] = None,
) -> Path:
    """Write non-Cartesian k-space with its trajectory as a compressed ``.npz``, atomically.

    Everything is checked as the reader checks it first (a file this writes always reads back), then
    stored as given: ``kspace`` complex64 ``(S, C, M)`` (a ``(C, M)`` input gains ``S = 1``), ``traj``
    float32 in ``convention`` (not converted), ``traj_convention``, ``matrix`` int64 ``(H, W)``, and the
    optional members.

    Args:
        path: the output file (any name; the archive is written through a file handle, so numpy does not
            append ``.npz``).
        kspace: ``(S, C, M)`` or ``(C, M)`` complex.
        traj: ``(..., 2)`` flattening to ``M`` (``"radians"``/``"cycles"``) or ``(3, readout, spokes)``
            (``"bart"``).
        matrix: the image size ``(H, W)``.
        convention: ``"radians"``, ``"cycles"`` or ``"bart"``.
        dcf: ``(M,)`` non-negative density compensation, or None.
        true_maps: ``(C, H, W)`` complex coil maps, or None.
        target: ``(S, H, W)`` real reference image, or None.

    Returns:
        ``path``.

    Raises:
        InputError: any member fails the reader's checks (shapes, sample counts, NaN, range).
    """
    from medrecon.io.atomic import atomic_write
    from medrecon.io.measurement import checked_true_maps
    from medrecon.io.noncartesian import (
        check_sample_count,
        checked_dcf,
        checked_kspace,
        checked_matrix,
        checked_target,
        checked_trajectory,
    )

    path = Path(path)
    name = path.name
    k = checked_kspace(kspace, name)
    hw = checked_matrix(matrix, name)
    stored_traj = _real_array(traj, f"{name}: the trajectory")
    radians = checked_trajectory(stored_traj, convention, hw, name)
    check_sample_count(radians.shape[0], k.shape[-1], name)
    members: dict[str, np.ndarray] = {"kspace": k, "traj": stored_traj, "traj_convention": np.array(convention),
                                      "matrix": np.array(hw, dtype=np.int64)}
    if dcf is not None:
        members["dcf"] = checked_dcf(dcf, k.shape[-1], name)
    if true_maps is not None:
        members["true_maps"] = checked_true_maps(true_maps, (k.shape[0], k.shape[1], *hw), name)
    if target is not None:
        members["target"] = checked_target(target, k.shape[0], hw, name)
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **members)
    return path
