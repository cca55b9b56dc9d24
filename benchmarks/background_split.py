"""Where does a reconstruction's background energy sit? (issue 24, the 8x residue)

For one dataset of a suite (default: the ``robust`` 8x variants) this runs zero-filled and the fast sampler
with one or more settings, then splits the hallucination measure (``medrecon.metrics.background_energy``)
by region of the reference's background:

- ``outside``: where the coil maps' support rule (``operators.coil_support``) says the measurement sees nothing;
- ``near``: inside that support and within 10 px of the object (beyond the measure's own 3 px margin);
- ``far``: inside the support, farther than 10 px from the object.

Each line also gives fastMRI PSNR/SSIM. Output: one JSON line per (dataset, method, setting); the first line of
each dataset is the reference scored against itself (its own noise floor: what a perfect reconstruction scores).

    python benchmarks/background_split.py --datasets fov256-random-8x-8c --settings samples=1 samples=4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _parse_setting(text: str) -> dict:
    out = {}
    for part in filter(None, text.split(",")):
        k, v = part.split("=")
        out[k] = int(v) if v.lstrip("-").isdigit() else float(v)
    return out


def _split(gt: np.ndarray, pred: np.ndarray, support: np.ndarray) -> dict:
    from scipy.ndimage import distance_transform_edt

    from medrecon.metrics import BACKGROUND_LEVEL, background_mask

    bg = background_mask(gt, BACKGROUND_LEVEL)
    obj = gt > BACKGROUND_LEVEL * gt.max()
    dist = np.stack([distance_transform_edt(~o) for o in obj])
    e_obj = float((gt[obj] ** 2).sum())
    parts = {"outside": bg & ~support, "near": bg & support & (dist <= 10), "far": bg & support & (dist > 10)}
    return {k: round(100 * float((pred[m] ** 2).sum()) / e_obj, 4) for k, m in parts.items()} | {
        "pixels": {k: int(m.sum()) for k, m in parts.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="robust")
    ap.add_argument("--datasets", nargs="+", default=["fov256-random-8x-8c", "fov256-equispaced-8x-16c"])
    ap.add_argument("--settings", nargs="+", default=["samples=1"],
                    help="fast-sampler settings, each k=v[,k=v] (steps, cg_iters, eta, samples)")
    ap.add_argument("--prior", default=None, help="MRI prior name or bundle folder (default: shipped)")
    ap.add_argument("--out", default=None, help="also write the lines to this JSON file")
    ap.add_argument("--reference-only", action="store_true", help="only the references' own background energy")
    a = ap.parse_args(argv)
    from operators import coil_support

    from medrecon.benchmark import load_suite
    from medrecon.benchmark.data import data_root, dataset_source, load_cases
    from medrecon.metrics import background_energy, volume_metrics
    from medrecon.priors import load_prior
    from medrecon.recon.config import ReconConfig
    from medrecon.recon.context import MriData
    from medrecon.recon.mri import reconstruct_kspace

    torch.set_num_threads(1)
    suite = load_suite(a.suite)
    dev = torch.device("cpu")
    prior = load_prior(a.prior, "mri", dev)
    rows = []
    for name in a.datasets:
        (ds,) = [d for d in suite.datasets if d.name == name]
        (case,) = load_cases(suite, ds, dataset_source(suite, ds, data_root(suite, None)), "test")
        k = torch.from_numpy(np.ascontiguousarray(case.kspace)).to(torch.complex64)
        m = torch.from_numpy(np.asarray(case.mask, dtype=bool))
        mask2d = m if m.dim() == 2 else m[None, :].expand(k.shape[-2], -1)
        maps = MriData(k * mask2d, mask2d, m).maps
        sup_full = coil_support(maps).numpy()
        h, w = case.recon_size
        top, left = (sup_full.shape[-2] - h) // 2, (sup_full.shape[-1] - w) // 2
        support = sup_full[..., top:top + h, left:left + w]
        gt = case.target.astype(np.float64)
        # The reference's own background (the source scan's noise floor): what a perfect reconstruction scores.
        row = {"dataset": name, "method": "reference", "settings": {}, "psnr": None, "ssim": None,
               "background_pct": round(100 * background_energy(gt, gt), 4), **_split(gt, gt, support), "seconds": 0.0}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if a.reference_only:
            continue
        runs = [("zero-filled", {})] + [("fast", _parse_setting(s)) for s in a.settings]
        for method, extra in runs:
            samples = int(extra.pop("samples", 1))
            cfg = ReconConfig(method=method, device="cpu", seed=suite.seed, progress=False, samples=samples,
                              **extra)
            t0 = time.perf_counter()
            res = reconstruct_kspace(case.kspace, case.mask, case.recon_size, cfg, dev,
                                     prior if method == "fast" else None, case.noise_std, maps=maps.numpy())
            gt, pred = case.target.astype(np.float64), res.image.astype(np.float64)
            vm = volume_metrics(gt, pred)
            row = {"dataset": name, "method": method, "settings": {**extra, "samples": samples},
                   "psnr": round(vm["psnr"], 3), "ssim": round(vm["ssim"], 4),
                   "background_pct": round(100 * background_energy(gt, pred), 4), **_split(gt, pred, support),
                   "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
