"""One scrubbing layer for every byte medrecon prints or writes (docs/security.md, issue 23 defect 2).

Patient identifiers reach medrecon inside its inputs: DICOM PatientName/PatientID/AccessionNumber, ISMRMRD
``subjectInformation``, identifying fastMRI attrs. Hospital layouts repeat them in file and folder names
(``/data/MRN7781234/ZQXDOE.h5``). Instead of asking every message, manifest and report to remember
to scrub itself, this module keeps one process-wide set of the identifiers read so far and applies it
at the three places where bytes leave the process:

- **stdout and stderr**: the CLI wraps both in :class:`ScrubbingStream` for the whole command, so
  ``wrote ...`` lines, batch ``done``/``failed`` lines, progress-bar labels, warnings and errors all
  pass through :func:`scrub_text`;
- **files**: :func:`medrecon.io.atomic.atomic_write`, the one way medrecon writes a file, calls
  :func:`finish_file` on the temporary before it becomes the output. Text files (JSON, Markdown,
  CSV, YAML, a BART header) are scrubbed in place; any other file that still holds an identifier of
  six characters or more is refused (not written), because scrubbing a binary would corrupt it. DICOM
  series written with ``--like`` carry the source patient's module on purpose (documented patient
  data) and are written inside :func:`allow_identifiers`;
- **records** built in memory (run records, manifests) use :func:`known` as extra planted strings.

Identifiers are registered where inputs are read: :func:`register_inputs` for the paths named on the
command line, and the readers (``load_input``, ``load_volume``, the benchmark's fastMRI loader) for each
file they parse, including a file that then fails to parse (its header is scanned on its own).

Matching is case-insensitive; values shorter than :data:`MIN_LENGTH` characters are not used (a
one- or two-letter name part would blank out ordinary words). A replaced value reads ``[removed]``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from medrecon.errors import InputError

__all__ = ["MIN_LENGTH", "REMOVED", "ScrubbingStream", "allow_identifiers", "finish_file", "forget", "known",
           "register", "register_inputs", "scrub_text", "scrubbed_std_streams"]

REMOVED = "[removed]"
MIN_LENGTH = 3
#: Binary outputs are scanned only for values this long: a random float image matches a given 3-letter
#: string every few megabytes, a 6-character one about once in 10^13 bytes.
MIN_BINARY_LENGTH = 6
#: Outputs scrubbed as text rather than scanned as bytes, by suffix.
TEXT_SUFFIXES = frozenset({".json", ".md", ".txt", ".csv", ".yaml", ".yml", ".hdr", ".log", ".tsv"})
_CHUNK = 1 << 22

_lock = threading.Lock()
_known: set[str] = set()
_scanned: set[tuple[str, int, int]] = set()
_pattern: re.Pattern[str] | None = None
_allow = threading.local()


def register(values: Iterable[Any]) -> None:
    """Add identifier strings (a patient name and its parts, an ID, a birth date) to the process-wide set."""
    global _pattern
    new = {str(v).strip() for v in values if v is not None and len(str(v).strip()) >= MIN_LENGTH}
    with _lock:
        if new - _known:
            _known.update(new)
            _pattern = None


def register_inputs(paths: Iterable[str | os.PathLike]) -> None:
    """Register the identifiers stored in each existing input file or folder (sandboxed header scan).

    Unreadable inputs contribute nothing; a file whose parse already timed out in this run is skipped.
    """
    from medrecon.io.run_record import identifiers_in
    from medrecon.io.sandbox import hung

    for p in paths:
        try:
            path = Path(p)
            if not path.exists() or hung(path):
                continue
            st = path.stat()
            key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        except (OSError, ValueError):
            continue
        if key in _scanned:  # named on the command line and then read: scan once
            continue
        register(identifiers_in(path))
        _scanned.add(key)


def known() -> tuple[str, ...]:
    """The identifiers registered so far (longest first)."""
    with _lock:
        return tuple(sorted(_known, key=len, reverse=True))


def forget() -> None:
    """Empty the set (between tests; a long-lived process serving several patients)."""
    global _pattern
    with _lock:
        _known.clear()
        _scanned.clear()
        _pattern = None


def _compiled() -> re.Pattern[str] | None:
    global _pattern
    with _lock:
        if _pattern is None and _known:
            values = sorted(_known, key=len, reverse=True)  # longest first: "ZQXDOE^ZQXJOHN" before "ZQXDOE"
            _pattern = re.compile("|".join(re.escape(v) for v in values), re.IGNORECASE)
        return _pattern


def scrub_text(text: str) -> str:
    """``text`` with every registered identifier replaced by ``[removed]``."""
    pattern = _compiled()
    if pattern is None or not text:
        return text
    return pattern.sub(REMOVED, text)


@contextlib.contextmanager
def allow_identifiers() -> Iterator[None]:
    """Files finished inside this block may hold identifiers: DICOM outputs made with ``--like``."""
    depth = getattr(_allow, "depth", 0)
    _allow.depth = depth + 1
    try:
        yield
    finally:
        _allow.depth = depth


def _allowed() -> bool:
    return getattr(_allow, "depth", 0) > 0


def _binary_hits(path: Path, values: tuple[str, ...]) -> bool:
    """Does the file hold any of ``values`` (ASCII case-insensitive, UTF-8 or UTF-16-LE)?"""
    needles = []
    for v in values:
        low = v.lower()
        needles.append(low.encode("utf-8", "ignore"))
        needles.append(low.encode("utf-16-le", "ignore"))
    overlap = max(len(n) for n in needles) - 1
    tail = b""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            data = (tail + block).lower()
            if any(n in data for n in needles):
                return True
            tail = data[-overlap:] if overlap > 0 else b""
    return False


def finish_file(tmp: Path, final: Path) -> None:
    """Apply the layer to a written temporary before it becomes ``final`` (called by ``atomic_write``).

    Raises:
        InputError: a binary output holds a registered identifier (it is then not written).
    """
    if _allowed() or not _known:
        return
    if final.suffix.lower() in TEXT_SUFFIXES and tmp.is_file():
        raw = tmp.read_bytes()
        text = raw.decode("utf-8", "surrogateescape")
        clean = scrub_text(text)
        if clean != text:
            tmp.write_bytes(clean.encode("utf-8", "surrogateescape"))
        return
    long_values = tuple(v for v in known() if len(v) >= MIN_BINARY_LENGTH)
    if not long_values:
        return
    files = [tmp] if tmp.is_file() else ([p for p in tmp.rglob("*") if p.is_file()] if tmp.is_dir() else [])
    if any(_binary_hits(f, long_values) for f in files):
        raise InputError(f"{scrub_text(final.name)} would hold a patient identifier read from the inputs, so it "
                         "was not written; report this (outputs other than DICOM with --like never carry them)")


class ScrubbingStream(io.TextIOBase):
    """A text stream that passes every write through :func:`scrub_text` (the CLI's stdout and stderr).

    Writes are scrubbed one call at a time: ``print`` and progress bars write whole messages, so an
    identifier is never split across two calls by medrecon's own output.
    """

    def __init__(self, inner: TextIO) -> None:
        super().__init__()
        self._inner = inner

    @property
    def inner(self) -> TextIO:
        return self._inner

    def write(self, text: str) -> int:  # type: ignore[override]
        self._inner.write(scrub_text(text))
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def fileno(self) -> int:
        return self._inner.fileno()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._inner, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._inner, "errors", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def scrubbed_std_streams() -> Iterator[None]:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in :class:`ScrubbingStream` for the block (the CLI command)."""
    import sys

    saved = sys.stdout, sys.stderr
    sys.stdout = ScrubbingStream(saved[0]) if not isinstance(saved[0], ScrubbingStream) else saved[0]
    sys.stderr = ScrubbingStream(saved[1]) if not isinstance(saved[1], ScrubbingStream) else saved[1]
    try:
        yield
    finally:
        # restore only what we replaced: a command may have swapped stdout itself (BrokenPipe -> devnull)
        if isinstance(sys.stdout, ScrubbingStream):
            sys.stdout = saved[0]
        if isinstance(sys.stderr, ScrubbingStream):
            sys.stderr = saved[1]
