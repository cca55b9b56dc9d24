"""BART ``.cfl``/``.hdr`` files: complex arrays, and 2-D multi-coil k-space in our fastMRI layout.

A BART array is two files: ``<base>.hdr``, text whose line after ``# Dimensions`` lists the
dimensions, and ``<base>.cfl``, the raw little-endian complex64 samples in column-major (Fortran)
order. BART's dimension meanings (``misc/mri.h``): ``READ_DIM=0, PHS1_DIM=1, PHS2_DIM=2,
COIL_DIM=3, MAPS_DIM=4, TE_DIM=5, ...``.

BART's centred FFT (``fftc``/``fftuc``) puts the k-space centre at index ``N // 2``, the same
sample as our ``operators.fft.fft2c``, and uses the same ``exp(-i ...)`` sign, so k-space read
here needs no shift or flip: ``ifft2c(kspace)`` is the image in BART's orientation (checked on
real data in ``tests/io/test_bart.py`` against BART's own ``pics`` reconstruction).

**Non-Cartesian k-space** (issue 20) follows BART's own convention (``bart traj``, ``bart nufft``):

- k-space ``(1, readout, spokes, coils)``, several slices in BART's ``SLICE_DIM`` (13); every other
  dimension 1;
- its trajectory is a separate array ``(3, readout, spokes)`` whose real parts are coordinates in
  1/FOV units (``[-N/2, N/2]``; BART's coordinate 0 is the image's dim 0 = our H, coordinate 1 = W) and
  whose third coordinate is 0 (2-D). One trajectory serves every slice.
- **Sibling rule**: the trajectory of the pair ``base.{hdr,cfl}`` is the pair ``base_traj.{hdr,cfl}``,
  unless a trajectory is given explicitly (:func:`read_bart_noncartesian`'s ``traj_path``).
- **Cartesian or not**: a pair is non-Cartesian when it has a trajectory (explicit or sibling); its
  k-space must then have dim 0 == 1. Without a trajectory it is read as Cartesian, as before, including
  ``(1, Y, Z, C)`` (a slice of a 3-D scan): the two cannot be told apart by their dimensions. Only a
  dim-0 == 1 array that cannot be Cartesian (one spatial dimension) gets the "missing trajectory" error.
- **Image matrix**: given explicitly, or estimated as ``bart nufft`` does when ``-d`` is not given
  (``estimate_im_dims`` in BART's ``src/noncart/nufft.c``, checked against BART v0.8.00's ``estdims``):
  per coordinate ``N = 2 * ceil(max |k|)`` over all samples, 1 where the coordinate is always 0. So
  BART-style radial spokes (``-N/2 + 0.5 .. N/2 - 0.5``) and readouts reaching ``-N/2`` both give ``N``;
  odd matrices cannot be estimated (:func:`write_bart_noncartesian` refuses them).
- Radians: ``k * 2 pi / N`` along each axis (:func:`operators.trajectories.to_radians`, ``"bart"``; the
  writer uses its inverse ``from_radians``); the samples are flattened spoke-major (BART's column-major
  order of ``(readout, spokes)``), as the trajectory's. BART's NUFFT uses the same sign, centre ``N // 2``
  and ``1 / sqrt(N)`` scale as ``operators.fft.fft2c``: its ``nufft -a`` of ``bart phantom -k`` data equals
  our exact adjoint DFT (``tests/io/test_noncartesian_io.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_write
from medrecon.io.guards import check_size, nbytes_of, reader_errors

if TYPE_CHECKING:  # the annotation only: medrecon.io.noncartesian is imported where it is used
    from medrecon.io.noncartesian import NonCartesianKspace

__all__ = ["BART_COIL_DIM", "BART_SLICE_DIM", "TRAJ_SUFFIX", "estimate_matrix", "has_trajectory",
           "read_bart_kspace", "read_bart_noncartesian", "read_cfl", "trajectory_sibling",
           "write_bart_noncartesian", "write_cfl"]

BART_COIL_DIM = 3  # COIL_DIM in BART's misc/mri.h
BART_SLICE_DIM = 13  # SLICE_DIM in BART's misc/mri.h
TRAJ_SUFFIX = "_traj"  # base.{hdr,cfl} -> its trajectory base_traj.{hdr,cfl}
_SPATIAL_DIMS = (0, 1, 2)  # READ_DIM, PHS1_DIM, PHS2_DIM
_MAX_HDR_BYTES = 1 << 16  # a BART header is a few lines; anything larger is not one
_CFL_DTYPE = np.dtype("<c8")


def _base(base_path: str | os.PathLike) -> Path:
    """``x``, ``x.cfl`` or ``x.hdr`` -> ``x`` (BART itself takes the base name)."""
    path = Path(base_path)
    if path.suffix.lower() in (".cfl", ".hdr"):
        return path.with_suffix("")
    return path


def _read_dims(hdr: Path) -> list[int]:
    """The dimensions listed after the ``# Dimensions`` line of a BART header."""
    if not hdr.is_file():
        raise InputError(f"BART header {hdr.name} does not exist; give the base name of a .hdr/.cfl pair")
    if hdr.stat().st_size > _MAX_HDR_BYTES:
        raise InputError(f"{hdr.name} is larger than 64 KiB; it is not a BART header")
    try:
        lines = hdr.read_bytes().decode("latin-1").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read BART header {hdr.name} ({type(exc).__name__})") from exc
    for i, line in enumerate(lines):
        if line.strip() == "# Dimensions" and i + 1 < len(lines):
            try:
                dims = [int(v) for v in lines[i + 1].split()]
            except ValueError:
                break
            if not dims or min(dims) < 1:
                raise InputError(f"{hdr.name} lists dimensions {dims}; each must be a positive integer")
            return dims
    raise InputError(f"{hdr.name} has no '# Dimensions' line followed by integers; it is not a BART header")


def read_cfl(base_path: str | os.PathLike) -> np.ndarray:
    """Read a BART ``.hdr``/``.cfl`` pair.

    Args:
        base_path: ``x``, ``x.cfl`` or ``x.hdr`` (the pair ``x.hdr`` + ``x.cfl`` is read).

    Returns:
        complex64 array with exactly the header's dimensions (BART writes 16; none are squeezed).

    Raises:
        InputError: missing files, a malformed header, or a ``.cfl`` whose size does not equal
            ``prod(dims) * 8`` bytes (checked before anything is read).
    """
    base = _base(base_path)
    hdr, cfl = base.with_name(base.name + ".hdr"), base.with_name(base.name + ".cfl")
    dims = _read_dims(hdr)
    if not cfl.is_file():
        raise InputError(f"BART data file {cfl.name} does not exist next to {hdr.name}")
    if len(dims) > 64:
        raise InputError(f"{hdr.name} lists {len(dims)} dimensions; BART arrays have at most 16 (up to 64 accepted)")
    expected = nbytes_of(dims, _CFL_DTYPE.itemsize)  # Python ints: hostile dims cannot overflow into a match
    size = cfl.stat().st_size
    if size != expected:
        # Size first: a truncated or mismatched file must not be half-read into a wrong shape.
        raise InputError(f"{cfl.name} has {size} bytes but its header dims {dims} need {expected}; it is truncated "
                         "or belongs to another header")
    check_size(expected, f"BART array {dims}", cfl.name)
    with reader_errors(cfl.name, "BART cfl"):
        data = np.fromfile(cfl, dtype=_CFL_DTYPE)
    return data.reshape(dims, order="F").astype(np.complex64, copy=False)


def write_cfl(base_path: str | os.PathLike, array: np.ndarray) -> tuple[Path, Path]:
    """Write ``array`` as a BART ``.hdr``/``.cfl`` pair, each file atomically.

    The ``.cfl`` is renamed into place before the ``.hdr``, so a reader never sees a new header
    next to old data; a stale pair of different size is caught by :func:`read_cfl`'s size check.

    Args:
        base_path: ``x``, ``x.cfl`` or ``x.hdr``.
        array: any numeric array (stored as complex64, column-major); a 0-d array becomes ``[1]``.

    Returns:
        The ``(hdr, cfl)`` paths written.
    """
    arr = np.asarray(array)
    if arr.dtype.kind not in "biufc":
        raise InputError(f"cannot write a {arr.dtype} array as BART cfl; give numeric data")
    arr = np.atleast_1d(arr).astype(np.complex64, copy=False)
    base = _base(base_path)
    hdr, cfl = base.with_name(base.name + ".hdr"), base.with_name(base.name + ".cfl")
    text = "# Dimensions\n" + " ".join(str(d) for d in arr.shape) + " \n"
    with atomic_write(hdr) as tmp_hdr, atomic_write(cfl) as tmp_cfl:
        arr.ravel(order="F").astype(_CFL_DTYPE, copy=False).tofile(tmp_cfl)
        tmp_hdr.write_text(text, encoding="ascii")
    return hdr, cfl


def read_bart_kspace(base_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read 2-D Cartesian multi-coil BART k-space into our ``(C, H, W)`` layout.

    BART stores k-space as ``(READ, PHS1, PHS2, COIL, ...)``. Of the three spatial dimensions
    exactly two may be larger than one (``(X, Y, 1, C)`` or, for a slice of a 3-D scan after an
    inverse FFT along the readout, ``(1, Y, Z, C)``); they become ``(H, W)`` in their BART order.
    All dimensions after COIL must be 1 (maps, echoes, time frames are not k-space of one image).
    No shift is needed: BART's centre (``N // 2``) is ours (see module docstring).

    Args:
        base_path: ``x``, ``x.cfl`` or ``x.hdr``.

    Returns:
        ``(kspace, mask)``: kspace complex64 so that ``ifft2c(kspace)`` gives the coil images;
        mask is True where any coil holds a non-zero sample (BART marks unsampled points by 0).

    Shapes:
        kspace: ``(C, H, W)``; mask: ``(H, W)`` bool.
    """
    data = read_cfl(base_path)
    name = _base(base_path).name
    dims = list(data.shape) + [1] * max(0, BART_COIL_DIM + 1 - data.ndim)
    data = data.reshape(dims)  # trailing singleton dims only: no copy, any order
    extra = [(i, d) for i, d in enumerate(dims[BART_COIL_DIM + 1 :], start=BART_COIL_DIM + 1) if d > 1]
    if extra:
        raise InputError(
            f"{name}: BART dimension(s) {[i for i, _ in extra]} beyond COIL are larger than 1; "
            "select one map/echo/frame first (bart slice)"
        )
    spatial = [i for i in _SPATIAL_DIMS if dims[i] > 1]
    if len(spatial) != 2:
        raise InputError(
            f"{name}: k-space has {len(spatial)} non-singleton spatial dims {dims[:3]}; "
            "medrecon reads 2-D k-space (for 3-D data inverse-FFT the readout and take one slice)"
        )
    # Drop the singleton spatial dim and the trailing ones, keep (H, W, C); then coils first.
    keep = [*spatial, BART_COIL_DIM]
    index = tuple(slice(None) if i in keep else 0 for i in range(len(dims)))
    kspace = np.ascontiguousarray(np.moveaxis(data[index], -1, 0)).astype(np.complex64, copy=False)
    mask = np.any(kspace != 0, axis=0)
    return kspace, mask


# ----------------------------------------------------------------------------- non-Cartesian


def trajectory_sibling(base_path: str | os.PathLike) -> Path:
    """The base name of the trajectory that goes with ``base_path``: ``x`` / ``x.cfl`` / ``x.hdr`` -> ``x_traj``."""
    base = _base(base_path)
    return base.with_name(base.name + TRAJ_SUFFIX)


def has_trajectory(base_path: str | os.PathLike) -> bool:
    """Whether either file of the sibling trajectory pair ``x_traj.{hdr,cfl}`` exists."""
    t = trajectory_sibling(base_path)
    return t.with_name(t.name + ".hdr").exists() or t.with_name(t.name + ".cfl").exists()


def estimate_matrix(traj: np.ndarray) -> tuple[int, int]:
    """The image matrix ``bart nufft`` assumes for a trajectory when ``-d`` is not given.

    BART v0.8.00 (``estimate_im_dims``): per coordinate ``2 * ceil(max |k|)``, or 1 when the coordinate is 0
    everywhere. Computed on the float32 values as stored, so it is what BART itself would estimate.

    Shapes:
        traj: ``(3, ...)`` or ``(2, ...)`` BART coordinates (1/FOV units); returns ``(H, W)`` from
        coordinates 0 and 1.
    """
    t = np.abs(np.asarray(traj)[:2].reshape(2, -1)).astype(np.float32)
    peak = t.max(axis=1) if t.size else np.zeros(2, np.float32)
    return tuple(1 if p == 0 else 2 * int(np.ceil(p)) for p in peak)  # type: ignore[return-value]


def _dims16(dims: tuple[int, ...]) -> list[int]:
    return list(dims) + [1] * max(0, BART_SLICE_DIM + 1 - len(dims))


def _kspace_layout(dims: list[int], name: str) -> tuple[int, int, int, int]:
    """``(readout, spokes, coils, slices)`` of BART non-Cartesian k-space dims, or a one-line error."""
    if dims[0] != 1:
        raise InputError(f"{name} has a trajectory but {dims[0]} samples in dim 0; BART non-Cartesian k-space is "
                         "(1, readout, spokes, coils)")
    extra = [i for i, d in enumerate(dims) if d > 1 and i not in (1, 2, BART_COIL_DIM, BART_SLICE_DIM)]
    if extra:
        raise InputError(f"{name}: BART dimension(s) {extra} of the non-Cartesian k-space are larger than 1; "
                         "medrecon reads (1, readout, spokes, coils) with slices in dim 13 (select one frame/echo)")
    return dims[1], dims[2], dims[BART_COIL_DIM], dims[BART_SLICE_DIM]


def read_bart_noncartesian(base_path: str | os.PathLike, traj_path: str | os.PathLike | None = None,
                           matrix: tuple[int, int] | None = None) -> "NonCartesianKspace":
    """Read BART non-Cartesian multi-coil k-space and its trajectory (module docstring for the rules).

    Args:
        base_path: the k-space pair ``x``, ``x.cfl`` or ``x.hdr``.
        traj_path: the trajectory pair; None: the sibling ``x_traj``.
        matrix: the image matrix ``(H, W)``; None: estimated from the trajectory as ``bart nufft`` does.

    Returns:
        :class:`medrecon.io.noncartesian.NonCartesianKspace` with ``kspace`` ``(S, C, spokes * readout)``
        complex64 and ``traj`` ``(spokes * readout, 2)`` float32 radians, both spoke-major.

    Raises:
        InputError: no trajectory, dims that are not BART's non-Cartesian layout, a trajectory whose sample
            count or layout differs from the k-space's, a complex or 3-D trajectory, NaN/Inf, out of range.
    """
    from medrecon.io.noncartesian import (
        NonCartesianKspace,
        check_sample_count,
        checked_kspace,
        checked_matrix,
        checked_trajectory,
    )

    base = _base(base_path)
    name = base.name
    tbase = _base(traj_path) if traj_path is not None else trajectory_sibling(base)
    thdr, tcfl = tbase.with_name(tbase.name + ".hdr"), tbase.with_name(tbase.name + ".cfl")
    if not (thdr.exists() or tcfl.exists()):
        raise InputError(f"{name}: BART non-Cartesian k-space needs its trajectory {tbase.name}.hdr/.cfl "
                         "(the sibling base_traj, or one given explicitly)")
    # Headers first: a mismatched pair is refused before either array is read.
    kdims, tdims = _dims16(tuple(_read_dims(base.with_name(base.name + ".hdr")))), _dims16(tuple(_read_dims(thdr)))
    readout, spokes, coils, slices = _kspace_layout(kdims, name)
    if tdims[0] != 3 or any(d > 1 for d in tdims[3:]):
        raise InputError(f"{tbase.name}: a BART trajectory has dims (3, readout, spokes), got {tdims[:3]} with "
                         f"{[i for i, d in enumerate(tdims) if d > 1 and i > 2] or 'no'} further dims")
    check_sample_count(tdims[1] * tdims[2], readout * spokes, name)
    if (tdims[1], tdims[2]) != (readout, spokes):
        raise InputError(f"{name}: the trajectory has {tdims[1]} readout x {tdims[2]} spokes but the k-space "
                         f"{readout} x {spokes}")
    t = read_cfl(tbase).reshape(3, readout, spokes)
    if not np.isfinite(t).all():
        raise InputError(f"{tbase.name}: the trajectory holds NaN or Inf values")
    if np.any(t.imag != 0):
        raise InputError(f"{tbase.name}: BART trajectory coordinates are real; this one has imaginary parts")
    coords = t.real  # a non-zero coordinate 2 (3-D) is refused by check_trajectory
    hw = checked_matrix(matrix if matrix is not None else estimate_matrix(coords), name)
    radians = checked_trajectory(coords, "bart", hw, tbase.name)
    # The file's column-major order is (1, readout, spokes, coils, 1.., slices), every other dim 1:
    # -> (readout, spokes, coils, slices) -> (slices, coils, spokes, readout) -> (S, C, M) spoke-major.
    data = read_cfl(base).reshape(-1, order="F").reshape(readout, spokes, coils, slices, order="F")
    kspace = checked_kspace(data.transpose(3, 2, 1, 0).reshape(slices, coils, spokes * readout), name)
    return NonCartesianKspace(kspace=kspace, traj=radians, matrix=hw,
                              attrs={"source_format": "bart", "readout": readout, "spokes": spokes,
                                     "slices": slices})


def write_bart_noncartesian(
    base_path: str | os.PathLike,
    kspace: np.ndarray,
    traj_radians: np.ndarray,
    matrix: tuple[int, int],
) -> tuple[Path, Path]:
    """Write non-Cartesian k-space and its trajectory as BART pairs ``base`` and ``base_traj``, atomically.

    The k-space becomes ``(1, readout, spokes, coils)`` (slices in dim 13 when there are several); the
    trajectory ``(3, readout, spokes)`` in 1/FOV units (``operators.trajectories.from_radians``).
    ``bart nufft`` reads them as they are (``bart nufft -a base_traj base img``). The trajectory is written
    first, so that the k-space pair, which detection finds, never appears without it.

    Args:
        base_path: ``x``, ``x.cfl`` or ``x.hdr``.
        kspace: ``(C, M)`` or ``(S, C, M)`` complex, samples spoke-major.
        traj_radians: ``(spokes, readout, 2)`` or ``(M, 2)`` (written as one spoke) radians per pixel.
        matrix: the image ``(H, W)``; it must be what BART estimates from the trajectory
            (``2 * ceil(max |k|)`` per axis), because neither BART nor the reader is told it otherwise.

    Returns:
        The base paths ``(kspace, trajectory)``.

    Raises:
        InputError: bad shapes or values, a sample-count mismatch, or a matrix BART would not estimate.
    """
    from medrecon.io.noncartesian import check_sample_count, checked_kspace, checked_matrix, checked_trajectory
    from operators.trajectories import from_radians

    base = _base(base_path)
    name = base.name
    k = checked_kspace(kspace, name)
    hw = checked_matrix(matrix, name)
    t = np.asarray(traj_radians)
    if t.ndim not in (2, 3) or t.shape[-1] != 2 or t.dtype.kind not in "iuf":
        raise InputError(f"{name}: the trajectory must be real (spokes, readout, 2) or (M, 2) radians, got "
                         f"{t.dtype} {t.shape}")
    checked_trajectory(t.reshape(-1, 2), "radians", hw, name)
    check_sample_count(t.size // 2, k.shape[-1], name)
    coords = from_radians(t, "bart", shape=hw)  # (3, readout, spokes) float32, what the file will hold
    estimated = estimate_matrix(coords)
    if tuple(estimated) != tuple(hw):
        raise InputError(f"{name}: BART would estimate a {estimated[0]}x{estimated[1]} image from this trajectory, "
                         f"not {hw[0]}x{hw[1]} (it takes 2*ceil(max |k|) per axis); write another format or "
                         "scale the trajectory")
    _, readout, spokes = coords.shape
    slices, coils = k.shape[:2]
    # (S, C, spokes * readout) -> (readout, spokes, C, S): BART's column-major (1, readout, spokes, C, .., S)
    arr = k.reshape(slices, coils, spokes, readout).transpose(3, 2, 1, 0)
    dims = [1, readout, spokes, coils] + ([1] * (BART_SLICE_DIM - 4) + [slices] if slices > 1 else [])
    tbase = trajectory_sibling(base)
    write_cfl(tbase, coords.astype(np.complex64))
    write_cfl(base, arr.reshape(dims, order="F"))
    return base, tbase
