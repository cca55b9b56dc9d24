"""Print every grid of this folder's sweeps (tuning split) as markdown, best first per suite and method.

    python benchmarks/sweeps/samplers_2026-12-06/summarize.py benchmarks/sweeps/samplers_2026-12-06/grids
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folder: str) -> int:
    rows: dict[tuple[str, str], list] = {}
    for f in sorted(Path(folder).glob("*.tuned.json")):
        suite, method, stage = f.name.removesuffix(".tuned.json").rsplit("-", 2)
        d = json.loads(f.read_text())
        ds = next(iter(d["grid"]))
        for g in d["grid"][ds][method]:
            settings = {k: v for k, v in g.items() if k not in ("psnr", "ssim", "seconds_per_slice", "error")}
            rows.setdefault((suite, method), []).append((g["psnr"], g["ssim"], g["seconds_per_slice"], stage, settings))
    print("| suite | method | stage | settings | PSNR (dB) | SSIM | s/slice |")
    print("|---|---|---|---|---|---|---|")
    for (suite, method), grid in rows.items():
        for psnr, ssim, sec, stage, settings in sorted(grid, key=lambda r: -r[0]):
            text = ", ".join(f"{k} {v:g}" for k, v in sorted(settings.items()))
            print(f"| {suite} | {method} | {stage} | {text} | {psnr:.2f} | {ssim:.4f} | {sec:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent / "grids")))
