"""k-space from ``.npy`` / ``.npz`` files, whose axis order must be stated (``--axes``).

Axis letters: ``S`` slices, ``C`` coils, ``H`` readout (kx), ``W`` phase encode (ky); ``H`` and ``W``
are required, ``S`` and ``C`` optional. The array must be complex and centred (DC at ``N//2``),
as fastMRI stores it. An ``.npz`` holds it under ``kspace`` (or as its only array) and may carry a
``mask`` of shape ``(W,)`` or ``(H, W)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrecon.errors import InputError
from medrecon.io.guards import check_size, nbytes_of, reader_errors

__all__ = ["read_numpy_kspace"]


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
