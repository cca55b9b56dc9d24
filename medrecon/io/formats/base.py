"""What a file format module declares, the probe detection reads, and helpers the format modules share.

A format is one :class:`FormatSpec`: how to recognise it from content (never from the name alone: names
lie, ``scan.h5`` may be ISMRMRD or fastMRI), how to read it (a measurement for ``recon``, an image volume
for ``simulate``/``train-prior``/``evaluate``, or both), which of its fields identify a patient, its
security duties, and a tiny valid sample for the fuzzer. docs/design.md, section 6, says how to add one.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from medrecon.errors import InputError

__all__ = ["FormatSpec", "Output", "Probe", "Sample", "PLANTED", "name_parts", "tiny_kspace"]

HEAD_BYTES = 548  # enough for the DICOM preamble (132) and the NIfTI-1 magic at 344

#: Identifiers planted in test files; none of these strings may appear in any output but DICOM files.
PLANTED = {
    "name": "Zyxwvut^Qponmlk",
    "id": "PID-73519-XQ",
    "birth": "19230417",
    "accession": "ACC-88412-ZZ",
}


@dataclass(frozen=True)
class Sample:
    """A tiny valid file of the format: ``writer(path) -> the path a reader is given`` (a few KiB).

    The fuzzer (:mod:`medrecon.testing.fuzzing`) truncates and mutates it; the reader must then succeed
    or fail with :class:`~medrecon.errors.MedreconError`.
    """

    writer: Callable[[Path], Path]
    filename: str


@dataclass(frozen=True)
class Output:
    """What an output writer is given: one reconstruction and what the input said about its space.

    Attributes:
        image: ``(S, H, W)`` float32 magnitude (MRI) or HU (CT).
        std: ``(S, H, W)`` posterior standard deviation, or None (one sample, or a classical method).
        modality: ``"mri"`` or ``"ct"``.
        method: the method's name.
        samples: posterior samples behind ``image`` and ``std``.
        prior: the prior's name (``"none"`` for classical methods).
        affine: the input's voxel-to-world matrix ``(4, 4)``, or None when the input has none.
        space: the affine's world space (``"RAS"``, ``"LPS"``), or None.
        like: a DICOM series whose geometry and study an output series copies (``--like``), or None.
    """

    image: Any
    std: Any
    modality: str
    method: str
    samples: int = 1
    prior: str = "none"
    affine: Any = None
    space: Optional[str] = None
    like: Optional[Path] = None


@dataclass(frozen=True)
class FormatSpec:
    """One file format.

    Attributes:
        name: the format's name (``detect_format`` returns it).
        sniff: ``sniff(probe) -> bool`` from content (:class:`Probe`); must not read more than a header.
        order: detection order, lower first (formats whose signature is inside another's come first).
        read_measurement: ``read(path, slices, axes) -> LoadedInput`` (:mod:`medrecon.io.measurement`),
            for formats ``recon`` reconstructs; called inside the parser sandbox.
        read_image: ``read(path, modality) -> Volume`` (:mod:`medrecon.io.volumes`), for image formats;
            called inside the parser sandbox.
        identifiers: ``identifiers(path) -> [str]``: patient identifiers the file stores (to scrub every
            record and message); None where the format has no identifying fields.
        samples: fuzzer seeds by name.
        output: the ``recon --format`` name when medrecon writes reconstructions in this format, else None.
        write: ``write(out, Output) -> [paths written]``, atomically (``--format output``).
        out_names: name endings that choose this output format when ``--format`` is not given.
        out_suffix: what a batch appends to a study's stem for its output (a name ending or ``_dicom``).
        out_folder: the writer makes a folder at the output path (a DICOM series); an empty existing
            folder there is then allowed.
        duties: the format's security duties in one line (what bounds its sizes, where it is parsed,
            which fields identify a patient), listed in each format module's docstring.
    """

    name: str
    sniff: Callable[["Probe"], bool]
    order: int = 50
    read_measurement: Optional[Callable[..., Any]] = None
    read_image: Optional[Callable[..., Any]] = None
    identifiers: Optional[Callable[[Path], list[str]]] = None
    samples: Mapping[str, Sample] = field(default_factory=dict)
    output: Optional[str] = None
    write: Optional[Callable[[Path, Output], list]] = None
    out_names: tuple[str, ...] = ()
    out_suffix: str = ""
    out_folder: bool = False
    duties: str = ""

    @property
    def kind(self) -> str:
        """``"measurement"`` when ``recon`` reads it, else ``"image"`` (the fuzzer's target)."""
        return "measurement" if self.read_measurement is not None else "image"


class Probe:
    """A path's first bytes and, for HDF5, its top-level names, read once and shared by every ``sniff``."""

    def __init__(self, path: Path):
        self.path = path
        self.is_dir = path.is_dir()
        self.is_file = path.is_file()
        self._head: Optional[bytes] = None
        self._gz: Optional[bytes] = None
        self._h5: Optional[frozenset] = None
        self._is_hdf5: Optional[bool] = None

    def head(self, n: int = HEAD_BYTES) -> bytes:
        """The first ``n`` (at most :data:`HEAD_BYTES`) bytes; ``b""`` for a folder or missing file."""
        if self._head is None:
            if not self.is_file:
                self._head = b""
            else:
                try:
                    with open(self.path, "rb") as fh:
                        self._head = fh.read(HEAD_BYTES)
                except OSError as exc:
                    raise InputError(f"cannot read {self.path.name} ({type(exc).__name__})") from exc
        return self._head[:n]

    def gunzip_head(self) -> bytes:
        """The first bytes of a gzip stream's content (bounded: no decompression bomb); ``b""`` if not gzip."""
        if self._gz is None:
            self._gz = b""
            if self.head(2) == b"\x1f\x8b":
                try:
                    with gzip.open(self.path, "rb") as fh:
                        self._gz = fh.read(HEAD_BYTES)
                except (OSError, EOFError, ValueError, zlib.error):  # damaged stream: simply "not this format"
                    self._gz = b""
        return self._gz

    @property
    def is_hdf5(self) -> bool:
        """HDF5 signature at 0, or after a user block (asked of h5py once: three formats sniff for it)."""
        if self._is_hdf5 is None:
            if not self.is_file:
                self._is_hdf5 = False
            elif self.head(8) == b"\x89HDF\r\n\x1a\n":
                self._is_hdf5 = True
            else:
                import h5py

                self._is_hdf5 = bool(h5py.is_hdf5(self.path))
        return self._is_hdf5

    def h5_names(self) -> frozenset:
        """Top-level names of an HDF5 file, plus ``dataset/xml`` when ``dataset`` is a group holding it."""
        if self._h5 is None:
            import h5py

            from medrecon.io.guards import memory_limit, reader_errors

            try:
                with reader_errors(self.path.name, "HDF5"), memory_limit(), h5py.File(self.path, "r") as f:
                    names = set(f.keys())
                    ds = f.get("dataset")
                    if isinstance(ds, h5py.Group) and "xml" in ds:
                        names.add("dataset/xml")
            except OSError as exc:
                raise InputError(f"cannot open {self.path.name}; the HDF5 file is damaged or truncated") from exc
            self._h5 = frozenset(names)
        return self._h5


def name_parts(value: str) -> list[str]:
    """A value, its components for person names ("Doe^John" -> "Doe", "John") and, for dates, the
    other ways one is written: DICOM's 19700101, ISMRMRD's 1970-01-01, 01.01.1970, 01/01/1970, ..."""
    value = value.strip()
    parts = [value, *re.split(r"[\^=\s,]+", value)]
    date = re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})", value)
    if date:
        y, m, d = date.groups()
        parts += [f"{y}{m}{d}", f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{y}/{m}/{d}"]
    return [p.strip() for p in parts if p.strip()]


def tiny_kspace(slices: int = 1, coils: int = 2, h: int = 16, w: int = 16, seed: int = 0) -> tuple:
    """``(kspace, mask, target)``: centred k-space of a smooth disc seen by ``coils`` smooth coils.

    The mask keeps the 8 central columns and every second other column (enough for ESPIRiT and SENSE).
    Shapes: kspace ``(S, C, H, W)`` complex64 (masked), mask ``(W,)`` bool, target ``(S, H, W)`` float32.
    """
    import torch

    from operators.fft import fft2c

    g = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    img = ((xx**2 + yy**2) < 0.5).astype(np.float32) * (1.0 + 0.1 * g.standard_normal((h, w)).astype(np.float32))
    phases = [np.exp(1j * (k * xx + (k % 2) * yy)) * (1.2 + np.cos(xx + k) * 0.2) for k in range(coils)]
    coil_imgs = np.stack([img * p for p in phases]).astype(np.complex64)
    k = fft2c(torch.from_numpy(np.broadcast_to(coil_imgs, (slices, coils, h, w)).copy())).numpy()
    mask = np.zeros(w, bool)
    mask[::2] = True
    mask[w // 2 - 4 : w // 2 + 4] = True
    target = np.sqrt((np.abs(coil_imgs) ** 2).sum(0))[None].repeat(slices, 0).astype(np.float32)
    return (k * mask).astype(np.complex64), mask, target


def subject_xml() -> str:
    """An ISMRMRD ``subjectInformation`` element holding the :data:`PLANTED` identifiers."""
    return (f"<subjectInformation><patientName>{PLANTED['name']}</patientName>"
            f"<patientID>{PLANTED['id']}</patientID><patientBirthdate>1923-04-17</patientBirthdate>"
            "</subjectInformation>")
