"""BART ``.cfl``/``.hdr`` files: complex arrays, and 2-D multi-coil k-space in our fastMRI layout.

A BART array is two files: ``<base>.hdr``, text whose line after ``# Dimensions`` lists the
dimensions, and ``<base>.cfl``, the raw little-endian complex64 samples in column-major (Fortran)
order. BART's dimension meanings (``misc/mri.h``): ``READ_DIM=0, PHS1_DIM=1, PHS2_DIM=2,
COIL_DIM=3, MAPS_DIM=4, TE_DIM=5, ...``.

BART's centred FFT (``fftc``/``fftuc``) puts the k-space centre at index ``N // 2``, the same
sample as our ``operators.fft.fft2c``, and uses the same ``exp(-i ...)`` sign, so k-space read
here needs no shift or flip: ``ifft2c(kspace)`` is the image in BART's orientation (checked on
real data in ``tests/io/test_bart.py`` against BART's own ``pics`` reconstruction).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_write
from medrecon.io.guards import check_size, nbytes_of, reader_errors

__all__ = ["BART_COIL_DIM", "read_bart_kspace", "read_cfl", "write_cfl"]

BART_COIL_DIM = 3  # COIL_DIM in BART's misc/mri.h
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
