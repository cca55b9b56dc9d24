"""Metrics against first-principles numpy references and fastMRI's evaluate.py conventions."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from medrecon.errors import InputError
from medrecon.metrics import (
    center_crop,
    evaluate_folders,
    format_summary,
    nmse,
    per_slice_metrics,
    psnr,
    ssim,
    volume_metrics,
)


def _ref_ssim_slice(x: np.ndarray, y: np.ndarray, data_range: float, win: int = 7) -> float:
    """Wang et al. (2004) SSIM: 7x7 uniform window, sample covariance, mean over valid windows."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    wx = np.lib.stride_tricks.sliding_window_view(x, (win, win))
    wy = np.lib.stride_tricks.sliding_window_view(y, (win, win))
    n = win * win
    mx, my = wx.mean(axis=(-1, -2)), wy.mean(axis=(-1, -2))
    dx, dy = wx - mx[..., None, None], wy - my[..., None, None]
    vx = (dx**2).sum(axis=(-1, -2)) / (n - 1)
    vy = (dy**2).sum(axis=(-1, -2)) / (n - 1)
    cxy = (dx * dy).sum(axis=(-1, -2)) / (n - 1)
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


@pytest.fixture()
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    # Slices with very different maxima, so per-slice vs per-volume data_range gives other numbers.
    gt = rng.random((3, 24, 20)) * np.array([1.0, 4.0, 0.3])[:, None, None]
    pred = gt + 0.05 * rng.standard_normal(gt.shape)
    return gt, pred


def test_metrics_match_first_principles(pair):
    gt, pred = pair
    mse = np.mean((gt - pred) ** 2)
    assert nmse(gt, pred) == pytest.approx(np.sum((gt - pred) ** 2) / np.sum(gt**2), rel=1e-12)
    assert psnr(gt, pred) == pytest.approx(10 * np.log10(gt.max() ** 2 / mse), rel=1e-12)
    ref = np.mean([_ref_ssim_slice(gt[i], pred[i], gt.max()) for i in range(3)])
    assert ssim(gt, pred) == pytest.approx(ref, abs=1e-9)
    # The same test would catch a per-slice data_range: that convention differs clearly here.
    per_slice_range = np.mean([_ref_ssim_slice(gt[i], pred[i], gt[i].max()) for i in range(3)])
    assert abs(per_slice_range - ref) > 1e-3
    out = volume_metrics(gt, pred)
    assert out["ssim"] == pytest.approx(ref, abs=1e-9)
    assert out["mse"] == pytest.approx(mse)


def test_explicit_maxval(pair):
    gt, pred = pair
    mse = np.mean((gt - pred) ** 2)
    assert psnr(gt, pred, maxval=10.0) == pytest.approx(10 * np.log10(100.0 / mse))
    ref = np.mean([_ref_ssim_slice(gt[i], pred[i], 10.0) for i in range(3)])
    assert ssim(gt, pred, maxval=10.0) == pytest.approx(ref, abs=1e-9)


def test_center_crop_fastmri_convention():
    x = np.arange(2 * 7 * 9).reshape(2, 7, 9)
    np.testing.assert_array_equal(center_crop(x, (4, 4)), x[:, 1:5, 2:6])  # from = (dim - target)//2
    t = torch.arange(7 * 9).reshape(7, 9)
    assert torch.equal(center_crop(t, (3, 8)), t[2:5, 0:8])
    with pytest.raises(InputError):
        center_crop(x, (8, 4))


def test_volume_metrics_crops_prediction(pair):
    gt, pred = pair
    padded = np.pad(pred, ((0, 0), (3, 4), (2, 2)), constant_values=7.0)
    assert volume_metrics(gt, padded) == pytest.approx(volume_metrics(gt, pred))


def test_volume_metrics_errors(pair):
    gt, pred = pair
    with pytest.raises(InputError):
        volume_metrics(gt, pred[:2])
    with pytest.raises(InputError):
        volume_metrics(gt, pred[:, :10])  # smaller than target: crop cannot fix it
    with pytest.raises(InputError):
        volume_metrics(gt[0], pred[0])
    with pytest.raises(InputError):
        volume_metrics(gt, pred.astype(np.complex64))
    bad = pred.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError):
        volume_metrics(gt, bad)


def test_per_slice_metrics_normalise_each_slice(pair):
    gt, pred = pair
    out = per_slice_metrics(gt, pred)
    scaled = per_slice_metrics(gt * np.array([5.0, 0.1, 2.0])[:, None, None], pred * 3.0)
    for key in ("psnr", "ssim", "nmse"):
        assert out[key] == pytest.approx(scaled[key], rel=1e-9)
    g, p = gt[1] / gt[1].max(), pred[1] / pred[1].max()
    ref_psnr = np.mean(
        [10 * np.log10(1 / np.mean((gt[i] / gt[i].max() - pred[i] / pred[i].max()) ** 2)) for i in range(3)]
    )
    assert out["psnr"] == pytest.approx(ref_psnr, rel=1e-9)
    assert out["n_slices"] == 3 and out["skipped_slices"] == 0
    assert _ref_ssim_slice(g, p, 1.0) == pytest.approx(per_slice_metrics(gt[1:2], pred[1:2])["ssim"], abs=1e-9)


def _write(path, key, arr):
    with h5py.File(path, "w") as f:
        f[key] = arr


def test_evaluate_folders(tmp_path, pair):
    gt, pred = pair
    tdir, rdir = tmp_path / "t", tmp_path / "r"
    tdir.mkdir(), rdir.mkdir()
    vols = {"a.h5": (gt, pred), "b.h5": (gt[:2] * 2, pred[:2] * 2 + 0.1)}
    for name, (t, r) in vols.items():
        t32 = t.astype(np.float32)[:, :, :]
        _write(tdir / name, "reconstruction_rss", t32)
        _write(rdir / name, "reconstruction", np.pad(r.astype(np.float32), ((0, 0), (5, 5), (3, 3))))
    res = evaluate_folders(tdir, rdir)
    assert res["n_volumes"] == 2 and res["target_keys"] == {"a.h5": "reconstruction_rss", "b.h5": "reconstruction_rss"}
    per = []
    for name, (t, r) in vols.items():
        # fastMRI evaluate.py crops target and recon to (w, w), w = target width (20 here).
        t32 = center_crop(t.astype(np.float32), (20, 20))
        r32 = center_crop(r.astype(np.float32), (20, 20))
        expected = volume_metrics(t32, r32)
        assert res["fastmri"]["volumes"][name] == pytest.approx(expected)
        per.append(expected["psnr"])
    assert res["fastmri"]["mean"]["psnr"] == pytest.approx(np.mean(per))
    assert res["fastmri"]["std"]["psnr"] == pytest.approx(np.std(per, ddof=1))
    assert res["fastmri"]["two_std"]["psnr"] == pytest.approx(2 * np.std(per, ddof=1))
    assert set(res["per_slice"]["mean"]) == {"psnr", "ssim", "nmse"}
    assert "PSNR = " in format_summary(res["fastmri"])


def test_evaluate_folders_single_volume_std_is_nan(tmp_path, pair):
    gt, pred = pair
    (tmp_path / "t").mkdir(), (tmp_path / "r").mkdir()
    _write(tmp_path / "t" / "x.h5", "reconstruction_esc", gt)
    _write(tmp_path / "r" / "x.h5", "reconstruction", pred)
    res = evaluate_folders(tmp_path / "t", tmp_path / "r")
    assert res["target_keys"]["x.h5"] == "reconstruction_esc"
    assert math.isnan(res["fastmri"]["std"]["ssim"])


def test_evaluate_folders_errors(tmp_path, pair):
    gt, pred = pair
    tdir, rdir = tmp_path / "t", tmp_path / "r"
    tdir.mkdir(), rdir.mkdir()
    with pytest.raises(InputError, match="no .h5"):
        evaluate_folders(tdir, rdir)
    _write(rdir / "a.h5", "reconstruction", pred)
    with pytest.raises(InputError, match="no target"):
        evaluate_folders(tdir, rdir)
    _write(tdir / "a.h5", "something_else", gt)
    with pytest.raises(InputError, match="reconstruction_rss"):
        evaluate_folders(tdir, rdir)
    _write(tdir / "a.h5", "mine", gt)
    assert evaluate_folders(tdir, rdir, target_key="mine")["n_volumes"] == 1
    _write(rdir / "a.h5", "reconstruction", pred[:, :10])
    with pytest.raises(InputError):
        evaluate_folders(tdir, rdir, target_key="mine")
    _write(rdir / "a.h5", "recon", pred)
    with pytest.raises(InputError, match="reconstruction"):
        evaluate_folders(tdir, rdir, target_key="mine")
    (rdir / "a.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not an HDF5"):
        evaluate_folders(tdir, rdir, target_key="mine")
    with pytest.raises(InputError):
        evaluate_folders(tmp_path / "missing", rdir)


# --------------------------------------------------------------------------- hallucination measure
def _disc_volume(n=48, r=14, value=1.0):
    yy, xx = np.mgrid[:n, :n]
    return (((yy - n / 2) ** 2 + (xx - n / 2) ** 2) < r ** 2).astype(np.float64)[None] * value


def test_background_energy_zero_for_exact_and_known_for_a_blob():
    from medrecon.metrics import background_energy, background_mask

    gt = _disc_volume()
    assert background_energy(gt, gt) == 0.0
    bg = background_mask(gt)
    # margin: pixels within 3 px of the disc are not background, the corners are
    assert not bg[0, 24, 24] and not bg[0, 24, 24 + 14 + 2] and bg[0, 0, 0]
    pred = gt.copy()
    pred[0, :4, :4] = 0.5  # an invented 4x4 patch in the corner
    expected = 16 * 0.25 / (gt ** 2).sum()
    assert background_energy(gt, pred) == pytest.approx(expected)


def test_background_energy_ignores_edge_blur_but_counts_a_ring():
    from scipy.ndimage import gaussian_filter

    from medrecon.metrics import background_energy

    gt = _disc_volume()
    blurred = gaussian_filter(gt, sigma=(0, 0.7, 0.7))
    assert background_energy(gt, blurred) < 1e-4
    ring = gt + 0.3 * (_disc_volume(r=22) - _disc_volume(r=19))
    assert background_energy(gt, ring) > 0.01
