"""What the non-Cartesian readers (npz, BART, ISMRMRD) share: checks of trajectory, matrix, density
compensation and sample counts, and the :class:`~medrecon.io.measurement.LoadedInput` they return.

Conventions (issue 20; the operator layer's, :mod:`operators.trajectories`):

- the trajectory is ``(M, 2)`` float32 in radians per pixel in ``[-pi, pi]``; column 0 is the frequency
  along the image's row axis H, column 1 along W;
- the k-space is ``(S, C, M)`` complex64 (slices, coils, samples), the samples in the trajectory's C
  order: spoke- (or interleave-) major, all readout points of spoke 0, then spoke 1, ...;
- one trajectory serves every slice; ``mask`` is None and ``recon_size`` is the image matrix ``(H, W)``.

Every message names the file by its base name only (folders may carry a patient's name) and is one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from medrecon.errors import InputError
from medrecon.io.measurement import LoadedInput, checked_true_maps, slice_range

__all__ = ["CONVENTIONS", "MAX_MATRIX", "NonCartesianKspace", "check_sample_count", "checked_dcf", "checked_kspace",
           "checked_matrix", "checked_target", "checked_trajectory", "nudft", "tiny_noncartesian",
           "to_loaded_input"]

#: The trajectory conventions the readers accept (:func:`operators.trajectories.to_radians`).
CONVENTIONS = ("radians", "cycles", "bart")
#: The largest image side accepted from a file (a crafted header must not size a huge image grid).
MAX_MATRIX = 16384


@dataclass
class NonCartesianKspace:
    """Non-Cartesian multi-coil k-space as a reader found it, before slice selection.

    Attributes:
        kspace: ``(S, C, M)`` complex64.
        traj: ``(M, 2)`` float32 radians per pixel in ``[-pi, pi]`` (column 0 along H, column 1 along W).
        matrix: the image matrix ``(H, W)``.
        dcf: ``(M,)`` float32 density compensation stored in the file, or None.
        true_maps: ``(C, H, W)`` complex64 coil maps a simulation used, or None.
        target: ``(S, H, W)`` float32 reference image, or None.
        maps: ``(S, C, H, W)`` or ``(C, H, W)`` complex coil maps the file gives (used by ``--maps auto``), or None.
        attrs: what else the reader learnt (``trajectory`` name, ``noise_whitened``, ...).
        pixel_mm: the finest in-plane pixel size when the file says, else None.
    """

    kspace: np.ndarray
    traj: np.ndarray
    matrix: tuple[int, int]
    dcf: Optional[np.ndarray] = None
    true_maps: Optional[np.ndarray] = None
    target: Optional[np.ndarray] = None
    maps: Optional[np.ndarray] = None
    attrs: Optional[dict] = None
    pixel_mm: Optional[float] = None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def checked_matrix(matrix: Any, name: str) -> tuple[int, int]:
    """``matrix`` as ``(H, W)`` Python ints, each in ``1..MAX_MATRIX``.

    Raises:
        InputError: not two positive integers (or larger than :data:`MAX_MATRIX`).
    """
    try:
        arr = np.asarray(matrix)
        ok = arr.shape == (2,) and arr.dtype.kind in "iuf" and bool(np.all(np.isfinite(arr))) \
            and bool(np.all(arr == np.round(arr)))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"{name}: the image matrix must be two integers (H, W), got {_one_line(repr(matrix))[:80]}")
    h, w = (int(v) for v in arr)
    if not (1 <= h <= MAX_MATRIX and 1 <= w <= MAX_MATRIX):
        raise InputError(f"{name}: the image matrix {h}x{w} is outside 1..{MAX_MATRIX} per side")
    return h, w


def checked_trajectory(traj: Any, convention: str, matrix: tuple[int, int], name: str) -> np.ndarray:
    """A trajectory in ``convention``, converted to and checked in radians (:func:`operators.trajectories.
    check_trajectory`), with its :class:`~operators.trajectories.TrajectoryError` turned into a one-line
    :class:`InputError` naming the file.

    Args:
        traj: ``(..., 2)`` for ``"radians"``/``"cycles"``; ``(3, readout, spokes)`` for ``"bart"``.
        convention: one of :data:`CONVENTIONS`.
        matrix: the image matrix ``(H, W)`` (scales ``"bart"`` coordinates).
        name: the file's base name.

    Returns:
        ``(M, 2)`` float32 radians per pixel in ``[-pi, pi]``.
    """
    from operators.trajectories import TrajectoryError, check_trajectory

    if convention not in CONVENTIONS:
        raise InputError(f"{name}: unknown trajectory convention {_one_line(str(convention))[:40]!r}; "
                         f"use one of {', '.join(CONVENTIONS)}")
    try:
        out = check_trajectory(traj, convention, shape=tuple(matrix))
    except TrajectoryError as exc:
        raise InputError(f"{name}: {_one_line(exc)}") from exc
    return np.ascontiguousarray(out, dtype=np.float32)


def check_sample_count(traj_samples: int, kspace_samples: int, name: str) -> None:
    """Refuse a trajectory whose sample count differs from the k-space's per coil (one line)."""
    if int(traj_samples) != int(kspace_samples):
        raise InputError(f"{name}: the trajectory has {int(traj_samples)} samples but the k-space has "
                         f"{int(kspace_samples)} per coil")


def checked_dcf(dcf: Any, samples: int, name: str) -> Optional[np.ndarray]:
    """Density compensation ``(M,)`` float32 (any shape of ``M`` finite, non-negative reals), or None."""
    if dcf is None:
        return None
    dcf = np.asarray(dcf)
    if dcf.dtype.kind not in "iuf" or dcf.size != samples:
        raise InputError(f"{name}: 'dcf' must hold {samples} real weights (one per sample), got {dcf.dtype} "
                         f"{dcf.shape}")
    dcf = dcf.reshape(-1).astype(np.float32)
    if not np.isfinite(dcf).all() or (dcf < 0).any():
        raise InputError(f"{name}: 'dcf' holds NaN, Inf or negative weights")
    return dcf


def checked_target(target: Any, slices: int, matrix: tuple[int, int], name: str) -> Optional[np.ndarray]:
    """A reference image ``(S, H, W)`` float32 (finite reals), or None."""
    if target is None:
        return None
    target = np.asarray(target)
    want = (slices, *matrix)
    if target.shape != want or target.dtype.kind not in "iuf" or not np.isfinite(target).all():
        raise InputError(f"{name}: 'target' must be a finite real image of shape {want}, got {target.dtype} "
                         f"{target.shape}")
    return target.astype(np.float32)


def checked_kspace(kspace: Any, name: str) -> np.ndarray:
    """Non-Cartesian k-space ``(S, C, M)`` or ``(C, M)`` -> ``(S, C, M)`` complex64 (finite, non-empty)."""
    kspace = np.asarray(kspace)
    if kspace.ndim not in (2, 3) or kspace.dtype.kind != "c" or kspace.size == 0:
        raise InputError(f"{name}: non-Cartesian k-space must be complex (slices, coils, samples) or (coils, "
                         f"samples), got {kspace.dtype} {kspace.shape}")
    if kspace.ndim == 2:
        kspace = kspace[None]
    kspace = kspace.astype(np.complex64)
    if not np.isfinite(kspace).all():
        raise InputError(f"{name}: k-space contains NaN or Inf values")
    return np.ascontiguousarray(kspace)


def to_loaded_input(nc: NonCartesianKspace, slices: Optional[str], name: str) -> LoadedInput:
    """The :class:`LoadedInput` of non-Cartesian k-space, cut to the ``slices`` range ``a:b``.

    Checks what every format shares: the sample count of trajectory and k-space (and ``dcf``), and the
    shapes of ``true_maps`` ``(C, H, W)`` and ``target`` ``(S, H, W)`` against the matrix.

    Returns:
        ``data`` ``(S', C, M)`` complex64, ``trajectory`` ``(M, 2)`` float32 radians, ``dcf`` ``(M,)`` or
        None, ``mask`` None, ``recon_size`` ``(H, W)``.
    """
    s_count, coils, m = nc.kspace.shape
    check_sample_count(nc.traj.shape[0], m, name)
    h, w = nc.matrix
    sel = slice_range(slices, s_count)
    target = checked_target(nc.target, s_count, (h, w), name)
    maps = None
    if nc.maps is not None:
        maps = np.asarray(nc.maps)
        if maps.ndim == 3:
            maps = np.broadcast_to(maps, (s_count, *maps.shape))
        if maps.shape != (s_count, coils, h, w) or maps.dtype.kind != "c" or not np.isfinite(maps).all() \
                or not np.any(maps):
            raise InputError(f"{name}: 'maps' must be finite, non-zero complex coil maps of shape "
                             f"{(s_count, coils, h, w)} or {(coils, h, w)}, got {maps.dtype} {maps.shape}")
        maps = np.ascontiguousarray(maps[sel], dtype=np.complex64)
    return LoadedInput(
        "mri", np.ascontiguousarray(nc.kspace[sel]), None, (h, w),
        None if target is None else target[sel],
        true_maps=checked_true_maps(nc.true_maps, (s_count, coils, h, w), name),
        maps=maps,
        pixel_mm=nc.pixel_mm,
        trajectory=nc.traj,
        dcf=checked_dcf(nc.dcf, m, name),
    )


# ----------------------------------------------------------------------------- tiny test data


def nudft(images: np.ndarray, traj: np.ndarray) -> np.ndarray:
    """The exact non-uniform DFT of small images, in the operator layer's convention.

    ``k[m] = sum_{h,w} x[h,w] exp(-i (t[m,0] (h - H//2) + t[m,1] (w - W//2))) / sqrt(H W)``: centred at
    ``N // 2`` and scaled as :func:`operators.fft.fft2c`, so that a Cartesian trajectory gives its samples.
    Memory ``M x H x W``: for tests and fuzzer seeds only.

    Shapes:
        images: ``(..., H, W)``; traj: ``(M, 2)`` radians; returns ``(..., M)`` complex64.
    """
    h, w = images.shape[-2:]
    t = np.asarray(traj, np.float64).reshape(-1, 2)
    eh = np.exp(-1j * t[:, :1] * (np.arange(h) - h // 2)[None])  # (M, H)
    ew = np.exp(-1j * t[:, 1:] * (np.arange(w) - w // 2)[None])  # (M, W)
    k = np.einsum("...hw,mh,mw->...m", images.astype(np.complex128), eh, ew) / np.sqrt(h * w)
    return k.astype(np.complex64)


def tiny_noncartesian(slices: int = 1, coils: int = 2, h: int = 16, w: int = 16, spokes: int = 8,
                      readout: int = 16, seed: int = 0) -> tuple:
    """``(kspace, traj, matrix, true_maps, target)``: radial k-space of a smooth disc seen by smooth coils
    (the fuzzer's seeds; exact DFT, so keep it tiny).

    Shapes: kspace ``(S, C, spokes * readout)`` complex64, traj ``(spokes, readout, 2)`` float32 radians,
    matrix ``(H, W)``, true_maps ``(C, H, W)`` complex64, target ``(S, H, W)`` float32 (root-sum-of-squares).
    """
    from operators.trajectories import radial  # lazy, as every operators import in medrecon.io (torch)

    g = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    img = ((xx**2 + yy**2) < 0.5) * (1.0 + 0.1 * g.standard_normal((h, w)))
    maps = np.stack([np.exp(1j * (k * xx + (k % 2) * yy)) * (1.2 + 0.2 * np.cos(xx + k)) for k in range(coils)])
    maps = (maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))).astype(np.complex64)
    images = np.broadcast_to(img[None, None] * maps[None], (slices, coils, h, w))
    traj = radial(spokes, readout)  # (spokes, readout, 2) radians, the operator layer's uniform radial
    target = np.broadcast_to(np.abs(img), (slices, h, w)).astype(np.float32)
    return nudft(images, traj), traj, (h, w), maps, target
