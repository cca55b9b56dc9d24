"""Sweep the CT TV weight (``medrecon recon --method tv --lam``, in units of mu_water) on a phantom.

Why: the library default must work on images unlike the benchmark suites' 2.6 mm body CT (where
the tuning splits chose lam 3-10). This sweep adds the other end: a Shepp-Logan phantom
(skimage) at 1 mm pixels, 128x128, 30 and 60 parallel views, noiseless and at 1e6 / 1e4 incident
photons per ray, 100 Chambolle-Pock iterations. It never touches a benchmark test slice.

    python benchmarks/sweep_ct_tv_lam.py [--lams 0.01,0.3,1,3,10] [--mu-water 0.019]

Prints PSNR (peak = the phantom's maximum) per setting; the results behind the default are in
benchmarks/sweeps/ct_tv_lam_2026-11-27.txt.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _phantom(n: int) -> torch.Tensor:
    """Shepp-Logan as attenuation, 0.02 /mm at its brightest (1 mm pixels)."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return torch.from_numpy(resize(shepp_logan_phantom(), (n, n), anti_aliasing=True) * 0.02).float()


def _psnr(gt: torch.Tensor, img: torch.Tensor) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    g = gt.double().numpy()
    return float(peak_signal_noise_ratio(g, img.double().numpy(), data_range=g.max()))


def main(argv: list[str]) -> int:
    from medrecon.baselines import fbp, tv_iterative
    from operators.ct import ParallelBeamCT, transmission_noise

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lams", default="0.01,0.3,1,3,10", help="TV weights in units of mu_water")
    ap.add_argument("--mu-water", type=float, default=0.019, help="mu_water in 1/mm (medrecon's default)")
    ap.add_argument("--size", type=int, default=128)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)  # many small projector calls: one thread beats two contended ones
    x = _phantom(a.size)
    print("columns: noiseless, 1e6 photons, 1e4 photons (PSNR dB)")
    for views in (30, 60):
        A = ParallelBeamCT((a.size, a.size), views)
        y = A(x)
        ys = torch.stack([y] + [transmission_noise(y, i0, torch.Generator().manual_seed(0)) for i0 in (1e6, 1e4)])
        print(f"{views} views  fbp      " + "  ".join(f"{_psnr(x, fbp(A, v)):6.2f}" for v in ys), flush=True)
        for lam in (float(v) for v in a.lams.split(",")):
            out = tv_iterative(A, ys, lam=lam * a.mu_water, iters=100)
            print(f"{views} views  lam {lam:<5g}" + "  ".join(f"{_psnr(x, o):6.2f}" for o in out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
