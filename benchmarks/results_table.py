"""Print a README results table (markdown) from benchmark ``results.json`` files, so numbers are never retyped.

    python benchmarks/results_table.py benchmarks/results/full_cpu_2026-12-06/mri-4x/results.json ...

One row per method: fastMRI-convention PSNR / SSIM (mean ± std over the test slices), the data misfit
``||A x - y|| / ||y||`` with the true image's in brackets (– in results written before it was recorded, and for
MRI classical methods), seconds per slice, NFE, and the settings used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from medrecon.benchmark.report import misfit_cell


def _settings(params: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in sorted(params.items())
                     if isinstance(v, (int, float, str)) and not (k == "final_dc" and not v)) or "–"


def _secs(s: float) -> str:
    return f"{s:.2f}" if s < 10 else f"{s:.0f}"


def rows(path: Path) -> list[str]:
    d = json.loads(Path(path).read_text())
    out = []
    for r in d["rows"]:
        out.append(f"| {d['suite']} | {r['method']} | {r['psnr']:.2f} ± {r.get('psnr_std') or 0:.2f} | "
                   f"{r['ssim']:.4f} ± {r.get('ssim_std') or 0:.4f} | {misfit_cell(r)} | {_secs(r['seconds_per_slice'])} "
                   f"| {r['nfe']} | "
                   f"{_settings(r.get('params') or {})} |")
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    print("| suite | method | PSNR (dB) | SSIM | misfit (noise) | s/slice | NFE | settings |")
    print("|---|---|---|---|---|---|---|---|")
    for p in argv:
        print("\n".join(rows(Path(p))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
