"""NRRD images (``NRRD000x`` magic): attached (``.nrrd``) or detached (``.nhdr`` + data file) headers.

Duties: ``sizes`` x ``type`` bound the data before it is read (:mod:`medrecon.io.volumes`); parsed in the
sandbox; NRRD holds no identifying fields. A detached header names its data file: that path is resolved
by the reader (see the security issue on keeping it inside the header's folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from . import register
from .base import FormatSpec, Probe, Sample

__all__ = ["SPEC", "tiny_nrrd"]


def sniff(p: Probe) -> bool:
    return p.head(7) == b"NRRD000"


def read_image(path: Path, modality: Optional[str] = None):
    from medrecon.io.volumes import load_nrrd

    return load_nrrd(path, modality)


def tiny_nrrd(path, shape: tuple[int, int, int] = (2, 16, 16)) -> Path:
    """An attached, raw, little-endian int16 NRRD volume with LPS space directions."""
    data = (np.arange(int(np.prod(shape))) % 300).astype("<i2").reshape(shape)
    sizes = " ".join(str(s) for s in shape[::-1])
    header = ("NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\n"
              f"sizes: {sizes}\nspace directions: (1,0,0) (0,1,0) (0,0,2)\nspace origin: (0,0,0)\n"
              "endian: little\nencoding: raw\n\n")
    Path(path).write_bytes(header.encode() + data.tobytes())
    return Path(path)


SPEC = register(FormatSpec(
    "nrrd", sniff, order=60, read_image=read_image, samples={"nrrd": Sample(tiny_nrrd, "x.nrrd")},
    duties="sizes x type bound the data before reading; sandboxed parse; no identifying fields"))
