"""Time the CT projector: sparse system matrix vs. the grid_sample path (same Joseph weights).

    python benchmarks/ct_projector.py [--sizes 192,512] [--views 60] [--batch 2] [--device cpu]

Prints, per image size, the one-off matrix build time and the mean time of ``A x`` and ``A^T y``
for both paths, plus their relative difference (float rounding only).
"""

from __future__ import annotations

import argparse
import os
import time

import torch


def _time(fn, device: str, reps: int) -> float:
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    from operators.ct import ParallelBeamCT

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="192,512")
    ap.add_argument("--views", type=int, default=60)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    print(f"device {a.device}, {a.views} views, batch {a.batch}, torch threads {torch.get_num_threads()}")
    print(f"{'size':>5} {'build s':>8} {'grid A ms':>10} {'sparse A ms':>12} {'grid AT ms':>11} {'sparse AT ms':>13} "
          f"{'max rel diff':>13}")
    for n in (int(v) for v in a.sizes.split(",")):
        op = ParallelBeamCT((n, n), a.views).to(a.device)
        x = torch.randn(a.batch, n, n, device=a.device)
        t0 = time.perf_counter()
        op.system_matrix(a.device, torch.float32)
        build = time.perf_counter() - t0
        ys = op(x)
        sa = _time(lambda op=op, x=x: op(x), a.device, a.reps)
        sat = _time(lambda op=op, ys=ys: op.H(ys), a.device, a.reps)
        bs = op.H(ys)
        os.environ["MEDRECON_CT_SPARSE_MAX_GB"] = "0"
        try:
            yg, bg = op(x), op.H(ys)
            ga = _time(lambda op=op, x=x: op(x), a.device, a.reps)
            gat = _time(lambda op=op, ys=ys: op.H(ys), a.device, a.reps)
        finally:
            del os.environ["MEDRECON_CT_SPARSE_MAX_GB"]
        diff = max(float((ys - yg).norm() / yg.norm()), float((bs - bg).norm() / bg.norm()))
        print(f"{n:>5} {build:>8.2f} {ga * 1e3:>10.1f} {sa * 1e3:>12.1f} {gat * 1e3:>11.1f} {sat * 1e3:>13.1f} "
              f"{diff:>13.1e}")


if __name__ == "__main__":
    main()
