"""Atomic file writes: a half-written output file is never left under its real name.

Writers (h5py, nibabel, numpy, ...) write to a hidden temporary path in the destination folder;
the temporary is renamed onto the real path only when the ``with`` block finishes without an
exception, and removed on any exception, including ``KeyboardInterrupt``. The rename is
``os.replace`` within one folder, so it is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from medrecon.errors import InputError

__all__ = ["atomic_write", "temporary_name"]

# Compression suffixes that only make sense together with the suffix before them (".nii.gz").
_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".xz", ".zst"}


def _real_suffix(name: str) -> str:
    """The suffix that tells a writer the format: ``.h5``, ``.nii.gz``, ``.cfl``, or ``''``."""
    path = Path(name)
    suffixes = path.suffixes
    if not suffixes:
        return ""
    if suffixes[-1].lower() in _COMPRESSION_SUFFIXES and len(suffixes) >= 2:
        return "".join(suffixes[-2:])
    return suffixes[-1]


def temporary_name(path: str | os.PathLike) -> Path:
    """A fresh hidden sibling of ``path``: ``.<name>.tmp-<random><suffix>``.

    The real suffix is repeated at the end so that writers choosing the format by extension
    (nibabel: ``.nii.gz``; h5py does not care) write the same format as the final file.
    """
    path = Path(path)
    token = secrets.token_hex(6)
    return path.with_name(f".{path.name}.tmp-{token}{_real_suffix(path.name)}")


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def _fsync(path: Path) -> None:
    """Flush a written file to disk before the rename (folders are left as they are)."""
    if path.is_file():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    Example:
        >>> with atomic_write("out/recon.h5") as tmp:   # doctest: +SKIP
        ...     with h5py.File(tmp, "w") as f:
        ...         f["reconstruction"] = recon

    Args:
        path: the final file. Its folder must exist; an existing file is replaced.

    Raises:
        InputError: the folder does not exist, or the block wrote nothing to the temporary path.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"output folder {folder} does not exist; create it first")
    if path.is_dir():
        raise InputError(f"output path {path} is a folder; give a file name")
    tmp = temporary_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise InputError(f"nothing was written for {path.name}; the writer produced no file")
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        # BaseException, not Exception: Ctrl-C mid-write must not leave a stray temporary.
        _remove(tmp)
        raise
