"""MRI sampler sweep with TRUE coil maps (isolates the prior and the sampler from ESPIRiT).

Held-out VS-SEG-001 T1 slices 40 and 60 (prepared cache, 0.9 mm) resized to 128x128, 8 birdcage coils,
fastMRI random mask (default 8x / 0.04), noiseless. This is the code behind
benchmarks/sweeps/mri_8x_128_2026-11-26.txt, which was run as separate throwaway scripts during development
with the same steps; rerun it to regenerate those numbers.

    python benchmarks/sweep_mri_truemaps.py CACHE.npz [ACCEL CENTER_FRACTION] [--dps-only --zetas 10,30 --steps 100 --samples K]

CACHE.npz comes from `medrecon train-prior --modality mri --data ../shared/data/mri/vsseg001_t1_dicom
--out x --save-cache CACHE.npz`.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F


def main(argv: list[str]) -> int:
    from medrecon.baselines import cs_wavelet
    from medrecon.metrics import psnr, ssim
    from medrecon.priors import load_prior
    from medrecon.priors.data import load_training_volumes
    from medrecon.recon.problems import mri_problem
    from medrecon.sampling import posterior_sample
    from medrecon.sampling.cg import cg_normal
    from medrecon.acquisition.mri import simulate_kspace
    from operators import rss
    from operators.fft import ifft2c

    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("cache")
    ap.add_argument("accel", nargs="?", type=int, default=8)
    ap.add_argument("cf", nargs="?", type=float, default=0.04)
    ap.add_argument("--dps-only", action="store_true", help="skip the baselines and the fast sampler")
    ap.add_argument("--zetas", default="0.3,1,3", help="DPS step sizes to sweep")
    ap.add_argument("--steps", type=int, default=100, help="DPS steps")
    ap.add_argument("--samples", type=int, default=1,
                    help="DPS posterior samples per slice, drawn in one batch; with K > 1 every sample and the "
                         "posterior mean of the first 1, 2, 4, ... samples are scored")
    a = ap.parse_args(argv)
    cache, accel, cf = a.cache, a.accel, a.cf
    prior = load_prior(None, "mri")
    st = torch.from_numpy(load_training_volumes([cache], "mri")[0].slices)[[40, 60]].float()
    img = F.interpolate(st[:, None], size=(128, 128), mode="bilinear", antialias=True)[:, 0]
    sim = simulate_kspace(img, 8, "random", accel, cf, seed=0, noise_std=0.0)
    gt = sim["target"].numpy().astype(np.float64)
    k, m = sim["kspace"], sim["mask"]

    def report(name, x):
        x = x.abs().numpy() if torch.is_tensor(x) else x
        print(f"{name}: psnr {psnr(gt, x):.2f} ssim {ssim(gt, x):.4f}", flush=True)

    report("zero-filled", rss(ifft2c(k)))
    maps = sim["maps"].expand(2, -1, -1, -1).contiguous()
    prob, _ = mri_problem(prior, k, m, maps=maps, noise_var=torch.zeros(2))
    if a.dps_only:
        return _dps(a, prior, prob, report)
    report("CG-SENSE 30", cg_normal(prob.A, prob.A.adjoint(prob.y), torch.zeros(2),
                                    torch.zeros(2, 128, 128, dtype=torch.complex64), 30))
    mx = float(prob.A.adjoint(prob.y).abs().amax())
    for lam in (0.002, 0.005, 0.01):
        report(f"cs-wavelet lam {lam}", cs_wavelet(prob.A, prob.y, lam * mx, iters=100))
    for k_, kw in [(1, dict(steps=50, cg_iters=5)), (1, dict(steps=50, cg_iters=2)),
                   (1, dict(steps=50, cg_iters=5, eta=0.0)), (4, dict(steps=50, cg_iters=5, eta=1.0)),
                   (4, dict(steps=100, cg_iters=5, eta=1.0)), (4, dict(steps=50, cg_iters=20, eta=1.0))]:
        report(f"fast K={k_} {kw}", posterior_sample("fast", prior, prob, samples=k_, seed=0, **kw).mean)
    return _dps(a, prior, prob, report)


def _dps(a, prior, prob, report) -> int:
    from medrecon.sampling import posterior_sample

    k = max(1, a.samples)
    for z in (float(v) for v in a.zetas.split(",")):
        res = posterior_sample("dps", prior, prob, samples=k, seed=0, steps=a.steps, zeta=z, keep_samples=k > 1)
        if k == 1:
            report(f"dps steps {a.steps} zeta {z}", res.mean)
            continue
        for j in range(k):  # (S, K, H, W): sample j of every slice
            report(f"dps steps {a.steps} zeta {z} sample {j}", res.samples[:, j])
        n = 1
        while n <= k:  # the complex posterior mean of the first n samples, then its magnitude
            report(f"dps steps {a.steps} zeta {z} mean of {n}", res.samples[:, :n].mean(1))
            n *= 2
        if n // 2 != k:
            report(f"dps steps {a.steps} zeta {z} mean of {k}", res.mean)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
