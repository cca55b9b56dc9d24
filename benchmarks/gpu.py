"""Time every reconstruction method on one GPU (or the CPU) and print a table.

MRI: 320x320 slices of the held-out T1 brain (VS-SEG-001, never trained on), 16 simulated birdcage
coils, fastMRI ``random`` mask 4x / 0.08. CT: 512x512 slices of the held-out body CT (air-padded),
60 parallel-beam views. Times are per slice with all slices batched, after a warm-up call;
PSNR/SSIM follow fastMRI's volume convention (medrecon.metrics).

    python benchmarks/gpu.py --mri-prior medrecon/weights/mri-brain --ct-prior medrecon/weights/ct-body \
        --mri-data HELD_MRI.npz --ct-data HELD_CT.npz --out gpu_results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medrecon.metrics import psnr, ssim  # noqa: E402
from medrecon.priors import load_bundle  # noqa: E402
from medrecon.priors.data import load_training_volumes  # noqa: E402
from medrecon.recon.problems import ct_problem, mri_problem  # noqa: E402
from medrecon.sampling import posterior_sample  # noqa: E402
from medrecon.sampling.cg import cg_normal  # noqa: E402
from medrecon.acquisition.ct import simulate_sinogram  # noqa: E402
from medrecon.acquisition.mri import simulate_kspace  # noqa: E402
from operators import ParallelBeamCT, mu_to_hu, rss  # noqa: E402
from operators.fft import ifft2c  # noqa: E402


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _fit(img: torch.Tensor, size: int, fill: float) -> torch.Tensor:
    """Centre-crop or pad ``(S, H, W)`` to ``size x size``."""
    s, h, w = img.shape
    ph, pw = max(0, size - h), max(0, size - w)
    img = F.pad(img, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=fill)
    h, w = img.shape[-2:]
    y, x = (h - size) // 2, (w - size) // 2
    return img[:, y:y + size, x:x + size]


def _row(name, modality, method, gt, pred, secs, n, nfe, dev, extra=None):
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if dev.type == "cuda" else None
    g, p = gt.cpu().numpy().astype(np.float64), pred.cpu().numpy().astype(np.float64)
    row = {"dataset": name, "modality": modality, "method": method, "psnr": round(psnr(g, p), 2),
           "ssim": round(ssim(g, p), 4), "seconds_per_slice": round(secs / n, 4), "nfe": nfe,
           "peak_mem_mb": None if peak is None else round(peak, 1), **(extra or {})}
    print(json.dumps(row), flush=True)
    return row


def run_mri(args, dev, rows):
    prior = load_bundle(args.mri_prior, dev)
    vols = load_training_volumes([args.mri_data], "mri")
    stack = torch.from_numpy(vols[0].slices)
    mid = len(stack) // 2
    mag = _fit(stack[mid - args.slices // 2: mid - args.slices // 2 + args.slices].float(), 320, 0.0)
    sim = simulate_kspace(mag, 16, "random", 4, 0.08, seed=0, noise_std=0.0)
    k = sim["kspace"].to(dev)
    mask = sim["mask"].to(dev)
    gt = sim["target"].to(dev)
    n = k.shape[0]
    _sync(dev)
    t0 = time.perf_counter()
    zf = rss(ifft2c(k))
    _sync(dev)
    rows.append(_row("t1-brain-320", "mri", "zero-filled", gt, zf, time.perf_counter() - t0, n, 0, dev))
    t0 = time.perf_counter()
    prob, maps = mri_problem(prior, k, mask)
    _sync(dev)
    t_maps = time.perf_counter() - t0
    print(f"ESPIRiT maps: {t_maps / n:.4f} s/slice", flush=True)
    t0 = time.perf_counter()
    sense = cg_normal(prob.A, prob.A.adjoint(prob.y), torch.zeros(n, device=dev), torch.zeros_like(gt, dtype=torch.complex64), 30)
    _sync(dev)
    rows.append(_row("t1-brain-320", "mri", "sense", gt, sense.abs(), time.perf_counter() - t0 + t_maps, n, 0, dev))
    for method, kw, ac in [("fast", {"steps": 50, "cg_iters": 5}, None), ("fast", {"steps": 50, "cg_iters": 5}, torch.bfloat16),
                           ("langevin", {"steps": 100, "cg_iters": 5}, torch.bfloat16),
                           ("daps", {"steps": 50, "ode_steps": 2, "lr": 1.5}, torch.bfloat16),
                           ("dps", {"steps": args.dps_steps, "zeta": args.zeta}, torch.bfloat16)]:
        net = prior.at_precision(ac)
        posterior_sample(method, net, prob, samples=1, seed=0, **{**kw, "steps": 2})  # warm-up
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        res = posterior_sample(method, net, prob, samples=1, seed=0, **kw)
        rows.append(_row("t1-brain-320", "mri", method, gt, res.mean.abs(), res.seconds + t_maps, n, res.nfe, dev,
                         {"autocast": str(ac), "sampler_seconds_per_slice": round(res.seconds / n, 4), **kw}))
    if not args.with_compile:
        return
    # issue 22: the fast sampler with the network through torch.compile (recon --compile); the warm-up compiles
    kw = {"steps": 50, "cg_iters": 5}
    net = prior.at_precision(torch.bfloat16, compiled=True)
    t0 = time.perf_counter()
    posterior_sample("fast", net, prob, samples=1, seed=0, **{**kw, "steps": 2})
    print(f"torch.compile warm-up: {time.perf_counter() - t0:.1f} s", flush=True)
    res = posterior_sample("fast", net, prob, samples=1, seed=0, **kw)
    rows.append(_row("t1-brain-320", "mri", "fast", gt, res.mean.abs(), res.seconds + t_maps, n, res.nfe, dev,
                     {"autocast": "torch.bfloat16+compile", "sampler_seconds_per_slice": round(res.seconds / n, 4), **kw}))


def run_ct(args, dev, rows):
    prior = load_bundle(args.ct_prior, dev)
    vols = load_training_volumes([args.ct_data], "ct")
    stack = torch.from_numpy(vols[0].slices).float()
    hu = _fit(stack[: args.ct_slices], 512, -1000.0).to(dev)
    n = hu.shape[0]
    A = ParallelBeamCT((512, 512), 60, pixel_size=vols[0].pixel_mm, detector_spacing=vols[0].pixel_mm).to(dev)
    y = simulate_sinogram(hu, A, seed=0)
    _sync(dev)
    t0 = time.perf_counter()
    fbp = mu_to_hu(A.fbp(y))
    _sync(dev)
    rows.append(_row("body-ct-512", "ct", "fbp", hu + 1000, fbp + 1000, time.perf_counter() - t0, n, 0, dev))
    prob = ct_problem(prior, A, y)
    for method, kw, ac in [("fast", {"steps": 50, "cg_iters": 5}, torch.bfloat16),
                           ("langevin", {"steps": 100, "cg_iters": 20}, torch.bfloat16),
                           ("daps", {"steps": 50, "ode_steps": 2, "lr": 1.5}, torch.bfloat16),
                           ("dps", {"steps": args.ct_dps_steps, "zeta": args.zeta}, torch.bfloat16)]:
        net = prior.at_precision(ac)
        posterior_sample(method, net, prob, samples=1, seed=0, **{**kw, "steps": 2})
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        res = posterior_sample(method, net, prob, samples=1, seed=0, **kw)
        rows.append(_row("body-ct-512", "ct", method, hu + 1000, mu_to_hu(res.mean) + 1000, res.seconds, n, res.nfe, dev,
                         {"autocast": str(ac), **kw}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mri-prior", required=True)
    ap.add_argument("--ct-prior", required=True)
    ap.add_argument("--mri-data", required=True)
    ap.add_argument("--ct-data", required=True)
    ap.add_argument("--slices", type=int, default=16)
    ap.add_argument("--ct-slices", type=int, default=8)
    ap.add_argument("--dps-steps", type=int, default=1000)
    ap.add_argument("--ct-dps-steps", type=int, default=1000)
    ap.add_argument("--zeta", type=float, default=1.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", choices=["mri", "ct"], default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--with-compile", action="store_true",
                    help="also time the MRI fast sampler with the network through torch.compile (recon --compile)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    card = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    rows: list = []
    with torch.inference_mode(False):
        if a.only in (None, "mri"):
            run_mri(a, dev, rows)
        if a.only in (None, "ct"):
            run_ct(a, dev, rows)
    result = {"device": card, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
              "command": "python benchmarks/gpu.py " + " ".join(sys.argv[1:]), "rows": rows}
    print(f"\n{card}, {result['date']}, torch {torch.__version__}")
    print("| data | method | autocast | s/slice | NFE | PSNR | SSIM | peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['method']} | {r.get('autocast', '-')} | {r['seconds_per_slice']} | {r['nfe']} | "
              f"{r['psnr']} | {r['ssim']} | {r['peak_mem_mb']} |")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
