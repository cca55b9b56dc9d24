"""Seconds per volume and peak memory of volume mode (issue 19), slice by slice against one pass and slabs.

A timing, not a quality measurement (quality: ``bash benchmarks/volume_suites.sh``): a stack of ``--slices`` slices
(the prepared held-out cache, repeated to length; contiguity does not change the cost) is simulated at the volume
suites' settings (MRI 160x160, 8 coils, random 8x; CT 192x192, 60 parallel views) and reconstructed by the fast
sampler at 50 steps: slice by slice (all slices in one batch, as ``recon`` does), in volume mode in one pass, and in
volume mode in slabs of ``--slab``. Peak memory is CUDA's ``max_memory_allocated`` on a GPU, the process's peak
resident set growth on a CPU.

    python benchmarks/volume_timing.py --modality mri --data .gpu/mri_held.npz --slices 32 --device cuda --out t.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from medrecon.acquisition.ct import CtScan
from medrecon.acquisition.mri import simulate_kspace
from medrecon.priors import load_prior
from medrecon.priors.data import load_training_volumes
from medrecon.recon.problems import ct_problem, mri_problem
from medrecon.sampling import posterior_sample
from medrecon.sampling.volume import volume_sample


def _stack(path: str, modality: str, n: int, size: int) -> torch.Tensor:
    vols = load_training_volumes([path], modality)
    s = torch.from_numpy(vols[0].slices).float()
    s = s.repeat((n + len(s) - 1) // len(s), 1, 1)[:n]
    return torch.nn.functional.interpolate(s[:, None], size=(size, size), mode="bilinear", antialias=True)[:, 0]


def _peak_mb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modality", choices=["mri", "ct"], required=True)
    ap.add_argument("--data", required=True, help="a prepared slice cache (.npz from gpu_prepare.sh)")
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--slab", type=int, default=16)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--z-weight", type=float, default=0.5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    prior = load_prior(None, a.modality, dev)
    net = prior.at_precision(torch.bfloat16 if a.bf16 else None)
    if a.modality == "mri":
        img = _stack(a.data, "mri", a.slices, 160)
        img = img / img.flatten().quantile(0.99).clamp_min(1e-6)
        sim = simulate_kspace(img, 8, "random", 8, 0.08, seed=0, noise_std=0.002)
        prob, _ = mri_problem(prior, sim["kspace"].to(dev), sim["mask"].to(dev),
                              noise_var=torch.full((a.slices,), 0.002 ** 2, device=dev))
        kw = {"steps": a.steps, "cg_iters": 5, "eta": 1.0}
    else:
        hu = _stack(a.data, "ct", a.slices, 192)
        scan = CtScan("parallel", 60, 2.6, 1e6, 0.019, 0)
        A = scan.operator((192, 192)).to(dev)
        prob = ct_problem(prior, A, scan.simulate(hu.to(dev), A), photons=1e6)
        kw = {"steps": a.steps, "cg_iters": 20, "eta": 1.0}
    runs = [("slice by slice", lambda: posterior_sample("fast", net, prob, seed=0, **kw)),
            ("volume, one pass", lambda: volume_sample("fast", net, prob, a.z_weight, seed=0, **kw)),
            (f"volume, slabs of {a.slab}", lambda: volume_sample("fast", net, prob, a.z_weight, seed=0, slab=a.slab,
                                                                 **kw))]
    volume_sample("fast", net, prob.select(slice(0, 2)), a.z_weight, seed=0, **{**kw, "steps": 2})  # warm-up
    rows = []
    for name, fn in runs:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        secs = time.perf_counter() - t0
        rows.append({"mode": name, "seconds_per_volume": round(secs, 2), "seconds_per_slice": round(secs / a.slices, 3),
                     "peak_mb": round(_peak_mb(dev), 1)})
        print(f"{a.modality} {name}: {secs:.1f} s per {a.slices}-slice volume, peak {rows[-1]['peak_mb']:.0f} MiB",
              flush=True)
    out = {"modality": a.modality, "slices": a.slices, "steps": a.steps, "z_weight": a.z_weight, "bf16": a.bf16,
           "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor(),
           "torch_threads": torch.get_num_threads(), "rows": rows,
           "peak_note": "CUDA max_memory_allocated per run" if dev.type == "cuda" else
           "CPU: the process's peak resident set so far (ru_maxrss), not reset between runs"}
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
