"""Pick, among several tuning rounds of one method, the round whose best grid point scores highest.

``medrecon benchmark --tune`` writes one ``tuned.json`` per round (its ``grid`` holds every point's tuning-split
PSNR); when a sweep runs a second round next to the first round's winner, the test run should use the better
round's winner, by the same criterion ``--tune`` uses (tuning-split PSNR). This copies that file to OUT.

Usage: python benchmarks/best_tuned.py OUT TUNED.json [TUNED.json ...] [--method fast]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def best_psnr(path: Path, method: str) -> float:
    """The highest tuning-split PSNR of ``method`` in one ``tuned.json`` (its first dataset)."""
    d = json.loads(path.read_text())
    ds = next(iter(d["params"]))
    return max(g["psnr"] for g in d["grid"][ds][method] if g.get("psnr") is not None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("tuned", type=Path, nargs="+")
    ap.add_argument("--method", default="fast")
    a = ap.parse_args()
    win = max(a.tuned, key=lambda p: best_psnr(p, a.method))  # first of equals wins, as before
    shutil.copy(win, a.out)
    print(f"{a.method} settings from {win}: {json.loads(win.read_text())['params']}")


if __name__ == "__main__":
    main()
