"""ESPIRiT settings of the reconstruction path, measured: kernel width, threshold and crop (issue 24).

For every MRI test slice of the given suites, coil maps are estimated from the undersampled k-space
with each setting, and CG-SENSE (10 iterations, the unregularized least-squares image: it shows what
the maps alone allow) is scored against the reference, over the whole image and inside the object
(reference > 5 % of its maximum: the whole-image scores also reward matching the reference's background floor). ``object lost`` is the fraction of object pixels
(reference > 5 % of its maximum) where every map vanishes: no reconstruction can put signal there.
With the simulated suites the true (birdcage) maps are scored too, as the ceiling.

Settings compared (kernel rule / threshold / crop):

- ``sigpy``: kernel half the calibration block's narrow side (3..6) / 0.02 / 0.95: medrecon's rule before
  2026-12-05 (threshold and crop are sigpy's ``EspiritCalib`` defaults);
- ``medrecon``: :func:`medrecon.recon.problems.coil_maps_for`, today's rule (kernel ``narrow - 8``, 3..6:
  at least 9 kernel positions across the block);
- a small grid around them with ``--grid``.

    python benchmarks/espirit_settings.py --suites robust,robust-bart,mri-4x,mri-8x --out FILE.json
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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # support_before_after


def _settings(grid: bool) -> list[tuple[str, str, float, float]]:
    """(label, kernel rule, threshold, crop)."""
    out = [("sigpy", "half", 0.02, 0.95), ("medrecon", "third", None, None)]
    if grid:
        for rule in ("half", "third", "nine", "six"):
            for thr in (0.005, 0.01, 0.02):
                for crop in (0.8, 0.95):
                    out.append((f"{rule}/{thr}/{crop}", rule, thr, crop))
    return out


def _maps(k: torch.Tensor, mask: torch.Tensor, rule: str, thr, crop) -> torch.Tensor:
    from medrecon.recon.problems import calib_block, calib_size, coil_maps_for
    from operators import espirit_maps

    if thr is None:
        return coil_maps_for(k, mask)
    if mask.dim() == 1:
        rows, cols = calib_size(mask)
        calib = (min(rows, k.shape[-2]), cols)
    else:
        calib = calib_block(mask)
    narrow = min(calib)
    kernel = {"half": min(6, max(3, narrow // 2)), "third": min(6, max(3, narrow // 3)),
              "nine": min(6, max(3, narrow - 8)), "six": 6}[rule]
    return espirit_maps(k, calib_width=calib, kernel_width=kernel, threshold=thr, crop=crop)


def _score(gt: np.ndarray, x: np.ndarray) -> dict:
    """Whole image (fastMRI convention) and inside the object (reference > 5 % of its maximum)."""
    from support_before_after import _object_scores

    from medrecon.metrics import psnr, ssim

    gt, x = gt.astype(np.float64), x.astype(np.float64)
    obj = _object_scores(gt, x)
    return {"psnr": round(psnr(gt, x), 3), "ssim": round(ssim(gt, x), 4),
            "psnr_object": round(float(obj["psnr_object"]), 3), "ssim_object": round(obj["ssim_object"], 4)}


def main(argv=None) -> int:
    from medrecon.baselines import cg_sense
    from medrecon.benchmark.data import load_cases, verify_dataset, data_root
    from medrecon.benchmark.manifest import load_suite
    from operators import MultiCoilMRI, birdcage_maps
    from operators.coils import coil_support

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", default="robust,robust-bart,mri-4x,mri-8x")
    ap.add_argument("--grid", action="store_true", help="also a grid of kernel rule x threshold x crop")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    for sname in args.suites.split(","):
        suite = load_suite(sname)
        for ds in suite.datasets:
            if ds.modality != "mri":
                continue
            for case in load_cases(suite, ds, verify_dataset(suite, ds, data_root(suite, None)), "test"):
                k = torch.from_numpy(case.kspace).to(torch.complex64)
                mask = torch.from_numpy(case.mask)
                m2 = mask if mask.dim() == 2 else mask[None].expand(k.shape[-2], -1)
                gt = case.target
                obj = gt > 0.05 * gt.max()
                trials = _settings(args.grid)
                if ds.source == "volume":  # simulated birdcage coils: the true maps are known
                    trials = [("true maps", "", 0, 0)] + trials
                for label, rule, thr, crop in trials:
                    t0 = time.perf_counter()
                    if label == "true maps":
                        h, w = k.shape[-2:]
                        maps = birdcage_maps(k.shape[1], (h, w))[None].expand(k.shape[0], -1, -1, -1)
                    else:
                        maps = _maps(k, mask, rule, thr, crop)
                    x = cg_sense(MultiCoilMRI(maps, m2), k, iters=10).abs().numpy()
                    sup = coil_support(maps).numpy()
                    row = {"suite": sname, "dataset": ds.name, "slices": case.slices, "setting": label,
                           **_score(gt, x), "object_lost": round(float((obj & ~sup).sum() / obj.sum()), 5),
                           "support_fraction": round(float(sup.mean()), 4),
                           "seconds": round(time.perf_counter() - t0, 2)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": "python benchmarks/espirit_settings.py " + " ".join(argv or sys.argv[1:]),
                                        "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
