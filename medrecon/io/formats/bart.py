"""BART ``.hdr``/``.cfl`` pairs: a text header of dimensions and raw complex64 data.

Duties: the data size is computed from the header's dimensions and checked against the ``.cfl`` file's
length and ``MEDRECON_MAX_GB`` before mapping it (:mod:`medrecon.io.bart`); parsed in the sandbox; BART
files hold no identifying fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from . import register
from .base import FormatSpec, Probe, Sample, tiny_kspace

__all__ = ["SPEC", "tiny_bart"]


def _is_bart_header(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        return fh.read(64).lstrip().startswith(b"# Dimensions")


def sniff(p: Probe) -> bool:
    """``x``, ``x.hdr`` or ``x.cfl`` naming a text BART header plus its ``.cfl`` data file."""
    if p.is_dir:
        return False
    path = p.path
    base = path.with_suffix("") if path.suffix.lower() in (".cfl", ".hdr") else path
    hdr, cfl = base.with_name(base.name + ".hdr"), base.with_name(base.name + ".cfl")
    return cfl.is_file() and _is_bart_header(hdr)


def read(path: Path, slices: Optional[str], axes: Optional[str]):
    from medrecon.io.bart import read_bart_kspace
    from medrecon.io.measurement import LoadedInput

    k, m = read_bart_kspace(path)
    return LoadedInput("mri", k[None], m, tuple(k.shape[-2:]))


def tiny_bart(path, **kw) -> Path:
    """A BART ``.hdr``/``.cfl`` pair of 2-D multi-coil k-space ``(H, W, 1, C)``; returns the base path."""
    from medrecon.io.bart import write_cfl

    k, _, _ = tiny_kspace(**kw)
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".cfl", ".hdr") else base
    write_cfl(base, np.moveaxis(k[0], 0, -1)[:, :, None, :])
    return base


SPEC = register(FormatSpec(
    "bart", sniff, order=5, read_measurement=read, samples={"bart": Sample(tiny_bart, "x")},
    duties="size from the header's dimensions, checked against the .cfl length and MEDRECON_MAX_GB; sandboxed "
           "parse; no identifying fields"))
