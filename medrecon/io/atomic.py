"""Atomic file writes: a half-written output file is never left under its real name.

Writers (h5py, nibabel, numpy, ...) write to a hidden temporary path in the destination folder;
the temporary is renamed onto the real path only when the ``with`` block finishes without an
exception, and removed on any exception, including ``KeyboardInterrupt``. The rename is
``os.replace`` within one folder, so it is atomic on POSIX file systems.

A run killed with SIGKILL cannot remove its temporary. Temporaries are therefore named
``.<name>.tmp-<host>-<pid>-<token><suffix>``, and the next write of the same output removes those of
processes of this host that no longer run (:func:`clean_stale_temporaries`).

:func:`check_output` is called before any work starts: an output path that is not a regular file
(a device node such as ``/dev/null``, a FIFO, a socket) is refused, because ``os.replace`` would put
a regular file in its place; and a folder we cannot create files in (read-only, ``/proc``) is a
one-line error instead of a raw ``OSError`` after the reconstruction.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from medrecon.errors import InputError
from medrecon.io import privacy

__all__ = ["atomic_write", "check_output", "check_output_folder", "clean_stale_temporaries", "pid_alive",
           "temporary_name", "write_text"]

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


def _host() -> str:
    """This machine's name, reduced to characters safe in a file name (at most 32)."""
    return re.sub(r"[^A-Za-z0-9.]", "", socket.gethostname())[:32] or "host"


def temporary_name(path: str | os.PathLike) -> Path:
    """A fresh hidden sibling of ``path``: ``.<name>.tmp-<host>-<pid>-<random><suffix>``.

    The real suffix is repeated at the end so that writers choosing the format by extension
    (nibabel: ``.nii.gz``; h5py does not care) write the same format as the final file. Host and
    pid let a later run tell a dead run's temporary from a live one's.
    """
    path = Path(path)
    token = secrets.token_hex(6)
    return path.with_name(f".{path.name}.tmp-{_host()}-{os.getpid()}-{token}{_real_suffix(path.name)}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (another user's process counts as running; a nonsense pid
    from a damaged temporary or claim name does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (OverflowError, ValueError, OSError):
        return False
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> int:
    """Remove temporaries of ``path`` left by dead processes of this host (a SIGKILLed run).

    Only names made by :func:`temporary_name` for this very output are considered; a temporary of a
    process that still runs, or of another host sharing the folder, is left alone. Returns the count.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(re.escape(f".{path.name}.tmp-{_host()}-") + r"(\d+)-[0-9a-f]{12}")
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        m = pattern.match(entry.name)
        if m and not pid_alive(int(m.group(1))):
            _remove(Path(entry.path))
            removed += 1
    return removed


def _refuse_special(path: Path) -> None:
    """An existing ``path`` must be a regular file (or a folder, for DICOM series outputs)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"output path {path}: {exc.strerror or type(exc).__name__}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(f"output path {path} is not a regular file (a device, FIFO or socket); "
                         "give a file name in a normal folder")


def _probe_folder(folder: Path) -> None:
    """Create and remove an empty file in ``folder``: can we write there at all?"""
    probe = folder / f".medrecon-probe-{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise InputError(f"cannot write to output folder {folder} ({exc.strerror or type(exc).__name__}); "
                         "choose a writable folder") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def missing_folder(folder: Path) -> InputError:
    """The one-line error for a missing output folder, with the exact command that creates it (issue 25:
    nothing is created behind the user's back, and nothing is left for them to guess)."""
    import shlex

    return InputError(f"output folder {folder} does not exist; create it first: mkdir -p {shlex.quote(str(folder))}")


def check_output(path: str | os.PathLike, folder_output: bool = False) -> None:
    """Refuse an output file path before any work: a missing folder, a folder we cannot write to,
    a path that is a folder (unless ``folder_output`` and it is empty: a DICOM series goes there), or an
    existing device node / FIFO / socket.

    Raises:
        InputError: with one line naming the path and the reason.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise missing_folder(folder)
    if path.is_dir() and not path.is_symlink():
        if not folder_output:
            raise InputError(f"output path {path} is a folder; give a file name")
        if any(path.iterdir()):
            raise InputError(f"output folder {path.name} exists and is not empty; choose a new folder")
    elif folder_output and path.exists():
        raise InputError(f"output path {path.name} is a file; give a folder for the DICOM series")
    _refuse_special(path)
    _probe_folder(folder)


def check_output_folder(folder: str | os.PathLike, create: bool = True) -> None:
    """Refuse an output folder before any work: not a folder, cannot be created, or not writable."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output {folder} exists and is not a folder")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create output folder {folder} ({exc.strerror or type(exc).__name__})") from None
    elif not folder.is_dir():
        raise missing_folder(folder)
    _probe_folder(folder)


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
        raise missing_folder(folder)
    if path.is_dir() and not path.is_symlink():
        raise InputError(f"output path {path} is a folder; give a file name")
    _refuse_special(path)
    clean_stale_temporaries(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise InputError(f"nothing was written for {path.name}; the writer produced no file")
        # the privacy layer sees every file before it exists under its name (medrecon.io.privacy)
        privacy.finish_file(tmp, path)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        # BaseException, not Exception: Ctrl-C mid-write must not leave a stray temporary.
        _remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, InputError):
            # a full disk, a read-only mount, a quota: one line naming the output, not a traceback
            raise InputError(f"cannot write {path} ({exc.strerror or str(exc) or type(exc).__name__})") from None
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_write` (and so through the privacy layer)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
