"""BART ``.hdr``/``.cfl`` pairs: a text header of dimensions and raw complex64 data; Cartesian k-space, or
non-Cartesian k-space ``(1, readout, spokes, coils)`` with its trajectory in the sibling pair ``base_traj``
(:mod:`medrecon.io.bart` states the rules).

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

__all__ = ["SPEC", "tiny_bart", "tiny_noncartesian_bart"]


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


def read(path: Path, slices: Optional[str], axes: Optional[str], traj: Optional[Path] = None,
         matrix: Optional[tuple[int, int]] = None):
    """Read a BART pair: non-Cartesian when a trajectory goes with it (``traj``, else the sibling ``base_traj``),
    Cartesian otherwise. ``matrix`` ``(H, W)`` overrides BART's estimate from the trajectory."""
    from medrecon.io.bart import _base, _read_dims, has_trajectory, read_bart_kspace, read_bart_noncartesian
    from medrecon.io.measurement import LoadedInput

    base = _base(path)
    if traj is not None or has_trajectory(base):
        from medrecon.io.noncartesian import to_loaded_input

        return to_loaded_input(read_bart_noncartesian(base, traj, matrix), slices, base.name)
    dims = _read_dims(base.with_name(base.name + ".hdr"))
    if dims[0] == 1 and sum(d > 1 for d in dims[1:3]) == 1:
        # (1, readout, spokes or 1, coils) with one spatial axis: not Cartesian 2-D k-space, so BART's
        # non-Cartesian layout without its trajectory. (1, Y, Z, C) stays Cartesian, as it always was.
        read_bart_noncartesian(base, None, matrix)  # raises the one-line "needs its trajectory" error
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


def tiny_noncartesian_bart(path, **kw) -> Path:
    """BART radial k-space ``(1, readout, spokes, C)`` with its trajectory pair ``<base>_traj``; returns the base."""
    from medrecon.io.bart import write_bart_noncartesian
    from medrecon.io.noncartesian import tiny_noncartesian

    k, traj, matrix, _, _ = tiny_noncartesian(**kw)
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".cfl", ".hdr") else base
    write_bart_noncartesian(base, k, traj, matrix)
    return base


SPEC = register(FormatSpec(
    "bart", sniff, order=5, read_measurement=read,
    samples={"bart": Sample(tiny_bart, "x"), "bart_noncart": Sample(tiny_noncartesian_bart, "x")},
    duties="size from the header's dimensions (k-space and its _traj trajectory), checked against the .cfl length "
           "and MEDRECON_MAX_GB; sandboxed parse; no identifying fields"))
