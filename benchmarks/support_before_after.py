"""Before/after of the support rule (issue 24) on a suite's test slices: whole image and inside the object.

For each test slice the fast sampler runs twice with the suite's settings, ``--support none`` (the old
behaviour) and the default, from the same seed. Scores: fastMRI PSNR/SSIM of the whole image (volume
convention), the same restricted to the object (``reference > 5 %`` of the volume maximum; SSIM as the mean
of skimage's SSIM map there), and the background energy. One JSON line per setting.

    python benchmarks/support_before_after.py mri-4x [--out FILE.json]
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


def _object_scores(gt: np.ndarray, pred: np.ndarray) -> dict:
    from skimage.metrics import structural_similarity

    from medrecon.metrics import BACKGROUND_LEVEL

    peak = float(gt.max())
    obj = gt > BACKGROUND_LEVEL * peak
    mse = float(((gt - pred)[obj] ** 2).mean())
    ssims = []
    for i in range(gt.shape[0]):
        _, smap = structural_similarity(gt[i], pred[i], data_range=peak, full=True)
        ssims.append(float(smap[obj[i]].mean()))
    return {"psnr_object": 10 * np.log10(peak ** 2 / mse), "ssim_object": float(np.mean(ssims))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite")
    ap.add_argument("--out", default=None)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    from medrecon.benchmark import load_suite
    from medrecon.benchmark.data import data_root, dataset_source, load_cases
    from medrecon.metrics import background_energy, volume_metrics
    from medrecon.priors import load_prior
    from medrecon.recon.config import ReconConfig
    from medrecon.recon.mri import reconstruct_kspace

    suite = load_suite(a.suite)
    ds = suite.datasets[0]
    if ds.modality != "mri":
        raise SystemExit("the support rule concerns MRI suites")
    (case,) = load_cases(suite, ds, dataset_source(suite, ds, data_root(suite, None)), "test")
    dev = torch.device(a.device)
    prior = load_prior(None, "mri", dev)
    settings = {k: v for k, v in ds.methods["fast"].items() if k in ("steps", "cg_iters", "eta", "samples")}
    rows = []
    for support in ("none", "auto"):
        cfg = ReconConfig(method="fast", device=a.device, seed=suite.seed, progress=False, support=support,
                          **settings)
        t0 = time.perf_counter()
        res = reconstruct_kspace(case.kspace, case.mask, case.recon_size, cfg, dev, prior, case.noise_std)
        gt, pred = case.target.astype(np.float64), res.image.astype(np.float64)
        row = {"suite": a.suite, "support": support, **{k: v for k, v in volume_metrics(gt, pred).items()
                                                       if k in ("psnr", "ssim", "nmse")},
               **_object_scores(gt, pred), "background": background_energy(gt, pred),
               "seconds": round(time.perf_counter() - t0, 1), "slices": case.slices, "settings": settings}
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
