"""Scoring: fastMRI volume convention vs per-slice convention, and their spreads."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.benchmark.scoring import aggregate, score_volume
from medrecon.metrics import per_slice_metrics, volume_metrics


def _vol(seed: int, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.random((n, 32, 32)) * np.array([1.0, 2.0, 0.5])[:n, None, None]
    return gt.astype(np.float32), (gt + 0.05 * rng.standard_normal(gt.shape)).astype(np.float32)


def test_volume_scores_are_fastmri_and_per_slice_scores_use_own_maxima():
    gt, pred = _vol(0)
    s = score_volume(gt, pred, "mri", [4, 7, 9])
    ref = volume_metrics(gt.astype(np.float64), pred.astype(np.float64))
    assert s["psnr"] == pytest.approx(ref["psnr"]) and s["ssim"] == pytest.approx(ref["ssim"])
    assert [x["slice"] for x in s["slices"]] == [4, 7, 9]
    norm = per_slice_metrics(gt.astype(np.float64), pred.astype(np.float64))
    assert np.mean([x["psnr_norm"] for x in s["slices"]]) == pytest.approx(norm["psnr"])
    # fastMRI SSIM of a volume = mean over slices with the volume max as peak.
    assert np.mean([x["ssim"] for x in s["slices"]]) == pytest.approx(ref["ssim"])


def test_ct_is_scored_in_hu_plus_1000():
    hu = np.full((1, 16, 16), -1000.0, np.float32)
    hu[:, 4:12, 4:12] = 40.0
    s = score_volume(hu, hu + 10.0, "ct", [0])
    assert s["psnr"] == pytest.approx(20 * np.log10(1040.0 / 10.0))


def test_spread_runs_over_slices_for_one_volume_and_over_volumes_for_several():
    one = aggregate([{"volume": "a", **score_volume(*_vol(0), "mri", [0, 1, 2])}])
    assert one["spread"] == "slices" and one["psnr_std"] > 0 and one["per_slice"]["psnr_std"] > 0
    vols = [{"volume": str(i), **score_volume(*_vol(i), "mri", [0, 1, 2])} for i in range(3)]
    many = aggregate(vols)
    assert many["spread"] == "volumes"
    assert many["psnr"] == pytest.approx(np.mean([v["psnr"] for v in vols]))
    assert many["psnr_std"] == pytest.approx(np.std([v["psnr"] for v in vols], ddof=1))
    single = aggregate([{"volume": "a", **score_volume(*_vol(0, n=1), "mri", [0])}])
    assert single["psnr_std"] is None
