"""Batch mode: reconstruct every file of a folder or glob into an output folder.

A thin front for :mod:`medrecon.scale` on the local executor: finished studies (output and run
record present) are skipped, so a rerun resumes; a broken file is reported on one line and the
batch goes on; ``OUT/manifest.json`` records each study as done, failed (with the reason) or
pending. The exit code is non-zero if any study failed or is still pending.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from medrecon.recon.config import ReconConfig
from medrecon.scale.run import ScaleOptions, run_studies
from medrecon.scale.studies import batch_inputs

__all__ = ["batch_inputs", "run_batch"]


def run_batch(spec: str, out_dir: Path, cfg: ReconConfig, fmt: Optional[str] = None,
              like: Optional[Path] = None, options: Optional[ScaleOptions] = None,
              command: Optional[list] = None) -> int:
    """Reconstruct each input to ``out_dir/<name>.h5`` (or ``.nii.gz`` / ``.png`` / DICOM folder).

    Each study is seeded by ``cfg.seed`` combined with its file name, so any executor, shard or retry
    gives the same output. Returns the exit code (0 when every study is done).
    """
    summary = run_studies(spec, Path(out_dir), cfg, fmt, like, options, command)
    prefix = f"shard {options.shard[0]}/{options.shard[1]}: " if options and options.shard else ""
    print(prefix + summary.line(), flush=True)
    return summary.exit_code
