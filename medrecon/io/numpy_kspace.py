"""k-space from ``.npy`` / ``.npz`` files, whose axis order must be stated (``--axes``).

Axis letters: ``S`` slices, ``C`` coils, ``H`` readout (kx), ``W`` phase encode (ky); ``H`` and ``W``
are required, ``S`` and ``C`` optional. The array must be complex and centred (DC at ``N//2``),
as fastMRI stores it. An ``.npz`` holds it under ``kspace`` (or as its only array) and may carry a
``mask`` of shape ``(W,)`` or ``(H, W)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from medrecon.errors import InputError

__all__ = ["read_numpy_kspace"]


def read_numpy_kspace(path, axes: Optional[str]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Return k-space ``(S, C, H, W)`` complex64 and an optional mask."""
    path = Path(path)
    if not axes:
        raise InputError(f"{path.name}: numpy k-space needs --axes naming its axes, e.g. --axes SCHW or --axes HWC")
    axes = axes.upper()
    if sorted(set(axes)) != sorted(axes) or not set(axes) <= set("SCHW") or not {"H", "W"} <= set(axes):
        raise InputError(f"--axes {axes!r} must use each of S, C, H, W at most once and include H and W")
    mask = None
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.keys())
                key = "kspace" if "kspace" in names else (names[0] if len(names) == 1 else None)
                if key is None:
                    raise InputError(f"{path.name} has several arrays and none named 'kspace'")
                arr = z[key]
                mask = z["mask"].astype(bool) if "mask" in names else None
        else:
            arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise InputError(f"{path.name} is not a readable numpy file ({type(exc).__name__})") from None
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
