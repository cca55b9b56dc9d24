"""Volume metrics: 3-D SSIM, the quality of the sagittal and coronal reformats, and slice-to-slice stripes.

Slice-by-slice reconstruction scores well per slice and still looks striped when a reader reformats the
volume, because each slice's errors are independent. The fastMRI metrics (:mod:`medrecon.metrics`) cannot
see that: their PSNR pools every voxel, and their SSIM is computed within axial slices. These can:

- ``ssim3d``: SSIM with a 7x7x7 window over the whole volume (skimage, the fastMRI constants), so structure
  along z counts (a smaller odd window along every axis when the volume has fewer than 7 slices).
- ``sag_psnr`` / ``cor_psnr`` and ``sag_ssim`` / ``cor_ssim``: the reformats a reader looks at. Every
  sagittal (``x = const``) and coronal (``y = const``) plane that crosses the object (its reference maximum
  above 5 % of the volume maximum) is scored as an image with the volume maximum as the peak, and the
  scores are averaged over planes, the per-slice convention applied to reformats. SSIM's 7x7 window in a
  reformat plane spans 7 slices, so stripes lower it.
- ``dz_psnr``: PSNR of the slice-to-slice differences ``x_{s+1} - x_s`` against the reference's, with the
  volume maximum as the peak: stripes are exactly errors in these differences.

Shapes: every function takes ``(S, H, W)`` arrays of the same shape, in the units the caller scores
(MRI magnitude; CT HU + 1000), with the slices contiguous and in order.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medrecon.errors import InputError

__all__ = ["REFORMAT_LEVEL", "dz_psnr", "reformat_metrics", "ssim3d", "volume3d_metrics"]

#: A reformat plane is scored when its reference maximum exceeds this fraction of the volume maximum.
REFORMAT_LEVEL = 0.05


def _check(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if gt.ndim != 3 or gt.shape != pred.shape:
        raise InputError(f"volume metrics need two (slices, h, w) arrays of one shape, got {gt.shape} and {pred.shape}")
    if gt.shape[0] < 2:
        raise InputError(f"volume metrics need at least 2 contiguous slices, got {gt.shape[0]}")
    return gt.astype(np.float64), pred.astype(np.float64)


def _window(n: int) -> int:
    """The SSIM window along an axis of ``n`` samples: 7, or the largest odd number <= n (at least 3)."""
    return 7 if n >= 7 else max(3, n - 1 if n % 2 == 0 else n)


def ssim3d(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """SSIM over the whole volume with a cubic window (7, or fewer on thin volumes), peak ``gt.max()``."""
    gt, pred = _check(gt, pred)
    if gt.shape[0] < 3:
        raise InputError("3-D SSIM needs at least 3 slices")
    peak = float(gt.max()) if maxval is None else float(maxval)
    return float(structural_similarity(gt, pred, data_range=peak, win_size=_window(min(gt.shape))))


def _planes(gt: np.ndarray, pred: np.ndarray, axis: int, peak: float) -> tuple[float, float, int]:
    """Mean PSNR and SSIM over the reformat planes along ``axis`` (2: sagittal, 1: coronal) that cross the object."""
    psnrs, ssims = [], []
    win = _window(min(gt.shape[0], gt.shape[3 - axis]))
    for j in range(gt.shape[axis]):
        g = np.take(gt, j, axis=axis)
        if g.max() <= REFORMAT_LEVEL * peak:
            continue
        p = np.take(pred, j, axis=axis)
        psnrs.append(peak_signal_noise_ratio(g, p, data_range=peak))
        if gt.shape[0] >= 3:
            ssims.append(structural_similarity(g, p, data_range=peak, win_size=win))
    if not psnrs:
        raise InputError("no reformat plane crosses the object (the reference is empty)")
    return float(np.mean(psnrs)), float(np.mean(ssims)) if ssims else float("nan"), len(psnrs)


def reformat_metrics(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> dict[str, float]:
    """``{"sag_psnr", "sag_ssim", "cor_psnr", "cor_ssim"}``: mean over the object's reformat planes."""
    gt, pred = _check(gt, pred)
    peak = float(gt.max()) if maxval is None else float(maxval)
    sp, ss, _ = _planes(gt, pred, 2, peak)
    cp, cs, _ = _planes(gt, pred, 1, peak)
    return {"sag_psnr": sp, "sag_ssim": ss, "cor_psnr": cp, "cor_ssim": cs}


def dz_psnr(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """PSNR of the slice-to-slice differences (the stripes), peak ``gt.max()``."""
    gt, pred = _check(gt, pred)
    peak = float(gt.max()) if maxval is None else float(maxval)
    err = np.diff(pred, axis=0) - np.diff(gt, axis=0)
    mse = float(np.mean(err ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


def volume3d_metrics(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> dict[str, float]:
    """Every volume metric: ``psnr3d`` (= fastMRI's volume PSNR), ``ssim3d``, the reformat scores, ``dz_psnr``."""
    gt, pred = _check(gt, pred)
    peak = float(gt.max()) if maxval is None else float(maxval)
    out = {"psnr3d": float(peak_signal_noise_ratio(gt, pred, data_range=peak))}
    if gt.shape[0] >= 3:
        out["ssim3d"] = ssim3d(gt, pred, peak)
    out.update(reformat_metrics(gt, pred, peak))
    out["dz_psnr"] = dz_psnr(gt, pred, peak)
    return out
