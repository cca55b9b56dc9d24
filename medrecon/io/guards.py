"""Defenses shared by every reader: a memory cap checked from headers, and one error type for damage.

Files from scanners, PACS exports and the internet may be truncated, corrupted or crafted. Three rules
keep a hostile file from crashing medrecon or exhausting the machine:

1. **Sizes before reads.** A reader computes how many bytes an array will take from the file's
   header (HDF5 dataset shape, BART/NRRD/NIfTI dims, DICOM Rows x Columns x frames, ISMRMRD
   encoded matrix) and calls :func:`check_size` *before* reading or allocating it. The cap is
   ``MEDRECON_MAX_GB`` (gibibytes, default :data:`DEFAULT_MAX_GB`); a header that claims more is
   refused with an :class:`~medrecon.errors.InputError` that names the variable to raise.
2. **A ceiling for C libraries.** Some damage is only seen inside a C library: a corrupted
   variable-length-data heap in an HDF5 file, or a JPEG 2000 codestream whose own header claims a
   huge image, makes the library allocate gigabytes for a file of a few KiB before it fails.
   :func:`memory_limit` lowers the process's ``RLIMIT_DATA`` to the current data size plus the
   cap while such a library parses, so that allocation fails (and becomes an ``InputError``)
   instead of exhausting the machine. Linux only; elsewhere it does nothing.
3. **One error type.** Third-party parsers (h5py, pydicom, nibabel, numpy, zlib, ...) raise dozens of
   exception types on damaged input. :func:`reader_errors` turns any of them into an ``InputError``
   naming the file and the exception *type* (never its text, which may quote header fields such as
   a patient name), chained so that ``medrecon --debug`` still shows the original traceback.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from medrecon.errors import InputError, MedreconError

__all__ = ["require_hdf5", "DEFAULT_MAX_GB", "ENV_MAX_GB", "check_size", "max_bytes", "memory_limit", "nbytes_of", "reader_errors",
           "require_finite"]

ENV_MAX_GB = "MEDRECON_MAX_GB"
#: Default cap on the bytes one input array may take in memory (GiB). A fastMRI knee volume is about
#: 1 GiB of complex64 k-space and the largest fastMRI brain files about 2.5 GiB, so 16 GiB leaves room
#: for every real file while refusing headers that claim terabytes.
DEFAULT_MAX_GB = 16.0
_GIB = 2**30


def max_bytes() -> int:
    """The cap in bytes, from ``MEDRECON_MAX_GB`` (a positive number of GiB) or the default.

    Raises:
        InputError: the variable is set but is not a positive number.
    """
    text = os.environ.get(ENV_MAX_GB, "").strip()
    if not text:
        return int(DEFAULT_MAX_GB * _GIB)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{ENV_MAX_GB}={text!r} is not a positive number of GiB; unset it or give e.g. 32")
    return int(value * _GIB)


def nbytes_of(shape: Iterable[int], itemsize: int) -> int:
    """Bytes of an array of ``shape`` and ``itemsize``, in Python integers (no int64 overflow on hostile dims)."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise InputError(f"array dimensions {dims} include a negative size; the file header is damaged")
    return math.prod(dims) * int(itemsize)


def check_size(nbytes: int, what: str, name: str) -> None:
    """Refuse an array that would need more than the cap, before it is read or allocated.

    Args:
        nbytes: bytes the array takes in memory once read (use :func:`nbytes_of`).
        what: what the array is, e.g. ``"k-space (16, 15, 640, 368) complex64"``.
        name: the file's base name (never a full path: folders may name the patient).

    Raises:
        InputError: ``nbytes`` exceeds ``MEDRECON_MAX_GB``.
    """
    cap = max_bytes()
    if nbytes > cap:
        raise InputError(
            f"{name}: {what} would need {nbytes / _GIB:.3g} GiB of memory, more than the {ENV_MAX_GB} limit of "
            f"{cap / _GIB:.3g} GiB; select fewer slices, or raise {ENV_MAX_GB} if the machine has the memory"
        )


def require_finite(data, what: str) -> None:
    """Writers call this first: an image with NaN/Inf is never written (it would look like a valid file).

    Raises:
        InputError: ``data`` holds NaN or Inf values.
    """
    import numpy as np

    arr = np.asarray(data)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise InputError(f"{what} holds NaN or Inf values, so it was not written; the reconstruction diverged "
                         "(lower --zeta or use more --steps)")


def _data_size() -> int | None:
    """The process's current data size (``VmData``, what ``RLIMIT_DATA`` is compared with), or None."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@contextlib.contextmanager
def memory_limit(extra: int | None = None) -> Iterator[None]:
    """Let the block allocate at most ``extra`` more bytes (default: the cap), via ``RLIMIT_DATA``.

    Used around third-party C parsers that trust sizes stored in the file. The previous limit is
    restored on exit. Nested uses keep the outer (tighter) limit. Does nothing where the
    ``resource`` module or ``/proc/self/status`` is missing.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        yield
        return
    current = _data_size()
    if current is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    # Headroom on top of the cap for the interpreter's own bookkeeping while the library runs.
    wanted = current + (max_bytes() if extra is None else int(extra)) + 256 * 2**20
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft <= wanted:
        yield  # an outer limit is already tighter
        return
    resource.setrlimit(resource.RLIMIT_DATA, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


@contextlib.contextmanager
def reader_errors(name: str, kind: str) -> Iterator[None]:
    """Turn any unexpected exception raised while parsing ``name`` into an :class:`InputError`.

    ``MedreconError`` passes through unchanged (it already says what is wrong). ``MemoryError``
    says the file is too large. Everything else is reported by type only, because third-party
    messages may quote header contents. ``KeyboardInterrupt`` and ``SystemExit`` are not caught.

    Args:
        name: the file's base name.
        kind: the format, e.g. ``"DICOM"``, ``"NIfTI"``, ``"HDF5"``.
    """
    try:
        yield
    except MedreconError:
        raise
    except MemoryError as exc:
        raise InputError(f"{name}: reading this {kind} file ran out of memory; lower the slice range or "
                         f"{ENV_MAX_GB}, or use a machine with more memory") from exc
    except RecursionError as exc:
        raise InputError(f"{name}: the {kind} file is nested too deeply to parse; it is damaged or hostile") from exc
    except Exception as exc:
        raise InputError(f"cannot read {name} ({type(exc).__name__}); the {kind} file is damaged, truncated or "
                         "not a valid file of this format") from exc


def require_hdf5(path, kind: str, give: str):
    """``path`` as a Path when it is an existing HDF5 file; otherwise a one-line InputError naming the file
    (never its folders, which may carry a patient's name) and what to give instead.

    Args:
        path: the input.
        kind: the format's name in messages (``"fastMRI"``, ``"ISMRMRD"``).
        give: what the user should pass, e.g. ``"a fastMRI .h5 k-space file"``.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{kind} file {path.name} does not exist")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path.name} is not an HDF5 file; give {give}")
    return path
