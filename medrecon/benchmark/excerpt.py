"""Suite excerpts: the few source slices a suite uses, so it runs where the data is not.

A volume suite reads a handful of slices (its test and tuning splits) from a large held-out series,
such as a 61 MB DICOM folder. ``medrecon benchmark --suite S --save-excerpt F.npz`` stores exactly those
slices, bit for bit, with what the simulation needs from the rest of the volume (its in-plane pixel
spacing, the whole volume's 99th percentile that sets the MRI scale, its slice count) and the sha256
the manifest gives for the source. ``--excerpt F.npz`` then runs the suite from the excerpt on a
machine without the source (a GPU node, a cluster worker): the simulated measurements, and so the
scores, are the same as from the source (the test suite checks this).

File format (``np.savez_compressed``, no pickles): ``meta`` holds JSON (``format`` =
``medrecon-excerpt/1``, the suite name and, per dataset, source file, sha256, modality, volume
shape, spacing, kind, scale and the stored slice indices); one array per dataset, named by the
dataset, holds the stored slices ``(k, H, W)`` in int16 where that is lossless, else float32.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrecon.errors import InputError

from .manifest import Dataset, Suite

__all__ = ["FORMAT", "ExcerptVolume", "read_excerpt", "save_excerpt"]

FORMAT = "medrecon-excerpt/1"


class _Rows:
    """Read-only view that answers ``data[idx]`` with the original slice numbers of the source volume."""

    def __init__(self, rows: np.ndarray, index: list[int], n: int) -> None:
        self._rows = rows
        self._pos = {int(i): k for k, i in enumerate(index)}
        self.shape = (int(n), *rows.shape[1:])
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, idx) -> np.ndarray:
        scalar = isinstance(idx, (int, np.integer))
        idx = [idx] if scalar else list(idx)
        missing = [int(i) for i in idx if int(i) not in self._pos]
        if missing:
            raise InputError(f"the excerpt does not hold slice(s) {missing}; save it again with --save-excerpt")
        out = self._rows[[self._pos[int(i)] for i in idx]].astype(np.float32)
        return out[0] if scalar else out


@dataclass
class ExcerptVolume:
    """The slices of one dataset's source volume, standing in for the volume (same ``data[idx]``, spacing).

    Attributes:
        name: the source's file or folder name (recorded as the case's volume).
        data: slice view indexed by the source's slice numbers; ``data.shape`` is the source's shape.
        spacing: the source's ``(slice, row, column)`` spacing in mm.
        kind: ``"hu"`` (CT) or ``"intensity"`` (MRI).
        scale: the whole source volume's 99th percentile of ``|data|`` (MRI), 1 for CT.
    """

    name: str
    data: _Rows
    spacing: tuple
    kind: str
    scale: float


def _needed(ds: Dataset) -> list[int]:
    return sorted({int(i) for part in ("test", "tuning") for i in ds.split.get(part, [])})


def save_excerpt(suite: Suite, root: Path, out: Path) -> dict:
    """Write the excerpt of every volume dataset of ``suite`` (sources verified against their sha256).

    Returns the ``meta`` record. fastMRI datasets (the user's own files) are not excerpted.

    Raises:
        InputError: no volume dataset in the suite, missing or altered source files.
    """
    from .data import source_volume, verify_dataset

    meta = {"format": FORMAT, "suite": suite.name, "datasets": {}}
    arrays = {}
    for ds in suite.datasets:
        if ds.source == "fastmri":
            continue
        path = verify_dataset(suite, ds, root)
        vol, scale = source_volume(str(path), ds.modality)
        idx = _needed(ds)
        rows = np.asarray(vol.data[idx], dtype=np.float32)
        as_int = rows.astype(np.int16)
        lossless = bool(np.array_equal(as_int.astype(np.float32), rows))
        arrays[ds.name] = as_int if lossless else rows
        meta["datasets"][ds.name] = {
            "file": ds.file.path, "sha256": ds.file.sha256, "modality": ds.modality, "volume": path.name,
            "shape": [int(s) for s in vol.data.shape], "spacing": [float(s) for s in vol.spacing],
            "kind": vol.kind, "scale": float(scale), "slices": idx}
    if not arrays:
        raise InputError(f"suite {suite.name} has no volume datasets to excerpt (fastMRI suites read your own files)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".npz")
    os.close(fd)
    try:  # written beside the target and renamed into place: never a half-written excerpt
        np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)
        from medrecon.io import privacy

        privacy.finish_file(Path(tmp), out)  # the privacy layer sees this file too (medrecon.io.privacy)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the excerpt is meant to be copied and shared
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return meta


def read_excerpt(path: str | Path, suite: Suite) -> dict[str, ExcerptVolume]:
    """Read an excerpt for ``suite``: dataset name -> :class:`ExcerptVolume`.

    Datasets the excerpt does not hold are left out of the result (they are read from their files).

    Raises:
        InputError: unreadable file, another format, an excerpt of none of the suite's sources (other data,
            or the same file name with another sha256), or one that lacks a slice the suite needs.
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"{p.name}: not a readable medrecon excerpt ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{p.name}: not a {FORMAT} file")
    records = [(name, rec) for name, rec in meta.get("datasets", {}).items() if isinstance(rec, dict)]
    out: dict[str, ExcerptVolume] = {}
    for ds in suite.datasets:
        if ds.source == "fastmri":
            continue
        need = set(_needed(ds))
        # Matched by source sha256 and slices, not by dataset name: suites that read the same slices of the
        # same volume (mri-4x and mri-8x) share one excerpt.
        same = [(n, r) for n, r in records if r.get("sha256") == ds.file.sha256 and n in arrays]
        hit = next(((n, r) for n, r in same if need <= set(r.get("slices", []))), None)
        if hit is None:
            if same:
                have = sorted(set().union(*(r.get("slices", []) for _, r in same)))
                raise InputError(f"{p.name}: holds slices {have} of {ds.file.path}, but suite {suite.name} needs "
                                 f"{sorted(need)}; save the excerpt with --suite {suite.name}")
            continue  # not excerpted: read from the data folder
        name, rec = hit
        out[ds.name] = ExcerptVolume(rec["volume"], _Rows(arrays[name], rec["slices"], rec["shape"][0]),
                                     tuple(rec["spacing"]), rec["kind"], float(rec["scale"]))
    if not out:
        raise InputError(f"{p.name}: excerpt of suite {meta.get('suite')!r} holds none of the data of suite "
                         f"{suite.name} (different source files or sha256)")
    return out
