"""The format registry: one module per file format, and the one place that decides a file's format.

Detection (:func:`detect`), the output writers behind ``recon --format`` (:func:`output`), the readers behind ``recon`` (:func:`medrecon.app.pipeline.load_input`) and
behind image loading (:func:`medrecon.io.volumes.load_volume`), identifier collection for run records
and messages (:func:`medrecon.io.run_record.identifiers_in`), and the fuzzer's seeds
(:mod:`medrecon.testing.samples`) all read :data:`FORMATS`. Adding a format is one module that builds a
:class:`FormatSpec` and calls :func:`register` (docs/design.md, section 6).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from medrecon.errors import InputError
from medrecon.registries import Registry

from .base import FormatSpec, Output, Probe, Sample

__all__ = ["FORMATS", "DEFAULT_OUTPUT", "FormatSpec", "Output", "Probe", "Sample", "detect", "get", "names", "output",
           "outputs", "register", "samples"]

#: the output format when neither ``--format`` nor the output's name chooses one
DEFAULT_OUTPUT = "h5"

FORMATS: Registry[FormatSpec] = Registry("format")


def register(spec: FormatSpec) -> FormatSpec:
    """Add a format (a name may be registered once). Returns ``spec``."""
    if spec.read_measurement is None and spec.read_image is None and spec.write is None:
        raise ValueError(f"format {spec.name!r}: give read_measurement, read_image, write or several")
    if (spec.output is None) != (spec.write is None):
        raise ValueError(f"format {spec.name!r}: an output format needs both its --format name and a writer")
    if spec.output is not None and spec.output in outputs():
        raise ValueError(f"output format {spec.output!r} is already registered")
    return FORMATS.add(spec.name, spec)


def get(name: str) -> FormatSpec:
    """The registered format ``name``."""
    return FORMATS.pick(name)


def names() -> tuple[str, ...]:
    """Registered format names in detection order."""
    return tuple(s.name for s in _ordered())


def _ordered() -> list[FormatSpec]:
    return sorted(FORMATS.values(), key=lambda s: s.order)


def detect(path: str | os.PathLike, probe: Optional[Probe] = None) -> FormatSpec:
    """The format of a file or folder, decided by content (each format's ``sniff``, in ``order``).

    Raises:
        InputError: the path does not exist, cannot be read, or matches no registered format.
    """
    path = Path(path)
    probe = probe or Probe(path)
    for spec in _ordered():
        if spec.sniff(probe):
            return spec
    if probe.is_dir:
        raise InputError(f"folder {path.name} holds no DICOM files; give a DICOM series folder or a single file")
    if not probe.is_file:
        raise InputError(f"input {path.name} does not exist")
    if probe.is_hdf5:
        raise InputError(f"{path.name} is HDF5 but holds none of /dataset/xml (ISMRMRD), kspace/reconstruction "
                         "(fastMRI) or sinogram")
    raise InputError(f"{path.name} is not a recognised file; medrecon reads fastMRI/ISMRMRD/sinogram HDF5, BART "
                     "cfl, DICOM, NIfTI, NRRD and numpy files")


def outputs() -> tuple[str, ...]:
    """The ``recon --format`` names, in registration order."""
    return tuple(s.output for s in FORMATS.values() if s.output is not None)


def output(out: str | os.PathLike, fmt: Optional[str] = None) -> FormatSpec:
    """The format that writes ``out``: ``fmt`` if given, else the one whose ``out_names`` ends the name, else
    :data:`DEFAULT_OUTPUT`.

    Raises:
        InputError: ``fmt`` is not an output format.
    """
    writers = {s.output: s for s in FORMATS.values() if s.output is not None}
    if fmt is not None:
        if fmt not in writers:
            raise InputError(f"unknown output format {fmt!r}; use {', '.join(writers)}")
        return writers[fmt]
    name = Path(out).name
    for spec in writers.values():
        if spec.out_names and name.endswith(spec.out_names):
            return spec
    return writers[DEFAULT_OUTPUT]


def samples() -> dict[str, tuple[Sample, FormatSpec]]:
    """Every registered format's fuzzer seeds: ``{seed name: (sample, its format)}``."""
    return {name: (s, spec) for spec in FORMATS.values() for name, s in spec.samples.items()}


# The shipped formats register themselves on import; the order of this list is the order of SEEDS.
from . import fastmri, ismrmrd, bart, numpy_kspace, sinogram, dicom, nifti, nrrd, png  # noqa: E402,F401
