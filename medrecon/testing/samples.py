"""Tiny valid files of every format medrecon reads: seeds for the hostile-input tests and the fuzzer.

Each writer makes a small (a few KiB), fully valid file that the matching reader accepts, so that a
fuzzer can truncate or mutate it and check that the reader either still succeeds or fails with
:class:`~medrecon.errors.MedreconError`. Files can carry planted patient identifiers
(:data:`PLANTED`) to test that no identifier leaks into logs, errors or run records.

Every function takes the output path and returns the path the reader should be given. Each writer lives
with its format (:mod:`medrecon.io.formats`: one module gives detection, reading, identifiers and the
sample); this module gathers them for tests and the fuzzer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from medrecon.io import formats
from medrecon.io.formats.base import PLANTED, tiny_kspace
from medrecon.io.formats.bart import tiny_bart
from medrecon.io.formats.dicom import tiny_dicom
from medrecon.io.formats.fastmri import tiny_fastmri
from medrecon.io.formats.ismrmrd import tiny_ismrmrd
from medrecon.io.formats.nifti import tiny_nifti
from medrecon.io.formats.nrrd import tiny_nrrd
from medrecon.io.formats.numpy_kspace import tiny_npy, tiny_npz
from medrecon.io.formats.sinogram import tiny_sinogram

__all__ = [
    "PLANTED",
    "SEEDS",
    "seeds",
    "tiny_bart",
    "tiny_dicom",
    "tiny_fastmri",
    "tiny_ismrmrd",
    "tiny_kspace",
    "tiny_nifti",
    "tiny_npy",
    "tiny_npz",
    "tiny_nrrd",
    "tiny_sinogram",
]


def seeds() -> dict[str, tuple[Callable[[Path], Path], str, str]]:
    """Every registered format's fuzzer seeds: ``{name: (writer, reader kind, file name)}``.

    The reader kind is ``"measurement"`` (read by :func:`medrecon.app.pipeline.load_input`) or ``"image"``
    (:func:`medrecon.io.volumes.load_volume`). A format registered later (a plugin, a test) is included.
    """
    return {name: (s.writer, spec.kind, s.filename) for name, (s, spec) in formats.samples().items()}


#: The shipped formats' seeds (:func:`seeds` at import time).
SEEDS: dict[str, tuple[Callable[[Path], Path], str, str]] = seeds()
