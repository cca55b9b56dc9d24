"""Batch mode: reconstruct every file of a folder or glob into an output folder.

Finished files (output and run record present) are skipped, so a rerun resumes; a broken file is
reported on one line and the batch goes on. The exit code is non-zero if any file failed.
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path
from typing import Optional

from medrecon.errors import InputError, MedreconError
from medrecon.recon.config import ReconConfig

__all__ = ["run_batch", "batch_inputs"]


def batch_inputs(spec: str) -> list[Path]:
    """The input files of a folder or glob, sorted (BART pairs by their ``.cfl``)."""
    p = Path(spec)
    files = sorted(p.iterdir()) if p.is_dir() else sorted(Path(f) for f in glob.glob(spec))
    out = []
    for f in files:
        if f.name.startswith(".") or f.name.endswith(".run.json") or f.suffix == ".hdr" or not f.is_file():
            continue
        out.append(f.with_suffix("") if f.suffix == ".cfl" else f)
    if not out:
        raise InputError(f"no input files in {spec}")
    return out


def run_batch(spec: str, out_dir: Path, cfg: ReconConfig, fmt: Optional[str] = None,
              like: Optional[Path] = None) -> int:
    """Reconstruct each input to ``out_dir/<name>.h5`` (or ``.nii.gz`` / DICOM folder)."""
    from medrecon.pipeline import reconstruct_file

    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = {"nifti": ".nii.gz", "dicom": ""}.get(fmt or "h5", ".h5")
    failed = done = skipped = 0
    for f in batch_inputs(spec):
        stem = f.name[:-7] if f.name.endswith(".nii.gz") else f.stem
        out = out_dir / (stem + (suffix if fmt != "dicom" else "_dicom"))
        if out.exists() and Path(str(out) + ".run.json").exists():
            skipped += 1
            continue
        try:
            reconstruct_file(f, out, cfg, fmt, like)
            done += 1
            print(f"done {f.name} -> {out.name}", flush=True)
        except MedreconError as exc:
            failed += 1
            print(f"medrecon: error: {f.name}: {str(exc).splitlines()[0]}", file=sys.stderr, flush=True)
    print(f"batch: {done} reconstructed, {skipped} already done, {failed} failed")
    return 1 if failed else 0
