"""Scores of a benchmark method in both metric conventions, per volume, per slice and aggregated.

- fastMRI convention (``medrecon.metrics.volume_metrics``): the test slices of a volume stacked as
  one volume; PSNR over the whole volume and SSIM averaged over slices, both with the volume's
  maximum as the peak. Across volumes: mean and sample std (ddof=1). With a single volume the
  spread is the std over slices of the same metrics computed slice by slice (still with the
  volume maximum as the peak).
- per-slice convention (``medrecon.metrics.per_slice_metrics``): every slice of target and
  reconstruction normalized by its own maximum; mean and std over slices.

CT images are scored in HU + 1000 (air ~ 0), so the peak is the densest tissue above air, as in
``medrecon recon``'s metrics. MRI images are first cropped to width x width as fastMRI's ``evaluate.py``
does (:func:`medrecon.metrics.fastmri_crop`), so ``recon``, ``evaluate`` and the benchmark give the same
numbers for the same image (a no-op on the square images of every shipped suite).

``volume3d`` (contiguous test slabs only, :mod:`medrecon.metrics3d`): 3-D SSIM, the sagittal and coronal
reformats' PSNR/SSIM and the PSNR of the slice-to-slice differences, per volume and averaged over volumes.

``background``: the hallucination measure (:func:`medrecon.metrics.background_energy`), energy in the
reference's background relative to the object's, per volume and averaged like NMSE.
"""

from __future__ import annotations

import math

import numpy as np

from medrecon.metrics import background_energy, fastmri_crop, nmse, per_slice_metrics, psnr, ssim, volume_metrics

__all__ = ["CT_OFFSET", "aggregate", "score_volume"]

CT_OFFSET = 1000.0
_NAMES = ("psnr", "ssim", "nmse")
_EXTRA = ("background",)  # fastMRI-convention only (no per-slice-normalized twin)
VOLUME3D = ("psnr3d", "ssim3d", "sag_psnr", "sag_ssim", "cor_psnr", "cor_ssim", "dz_psnr")


def contiguous(slices: list[int]) -> bool:
    """Whether test slices form one contiguous slab of at least 3 slices (the volume metrics need one)."""
    return len(slices) >= 3 and all(b == a + 1 for a, b in zip(slices, slices[1:]))


def _prep(target: np.ndarray, image: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
    gt = target.astype(np.float64)
    pred = image.astype(np.float64)
    if modality == "ct":
        gt, pred = gt + CT_OFFSET, pred + CT_OFFSET
    return gt, pred


def score_volume(target: np.ndarray, image: np.ndarray, modality: str, slices: list[int]) -> dict:
    """Both conventions for one volume.

    Shapes:
        target: ``(S, h, w)``; image: ``(S, H, W)`` with ``H >= h, W >= w`` (centre-cropped).

    Returns:
        ``{"psnr", "ssim", "nmse"}`` (fastMRI volume convention) plus ``"slices"``: per slice
        ``{"slice", "psnr", "ssim", "nmse"}`` (volume-max peak) and ``"psnr_norm", "ssim_norm",
        "nmse_norm"`` (per-slice normalized).
    """
    gt, pred = _prep(target, image, modality)
    if modality == "mri":  # fastMRI evaluate.py's width x width crop: the numbers recon and evaluate give (issue 25)
        gt, pred = fastmri_crop(gt, pred)
    vol = volume_metrics(gt, pred)
    bg = background_energy(gt, pred)
    if pred.shape[1:] != gt.shape[1:]:
        from medrecon.metrics import center_crop

        pred = center_crop(pred, gt.shape[1:])
    peak = float(gt.max())
    per = []
    for i, s in enumerate(slices):
        norm = per_slice_metrics(gt[i:i + 1], pred[i:i + 1])
        per.append({"slice": int(s), "psnr": psnr(gt[i], pred[i], peak), "ssim": ssim(gt[i:i + 1], pred[i:i + 1], peak),
                    "nmse": nmse(gt[i], pred[i]), "background": background_energy(gt[i:i + 1], pred[i:i + 1]),
                    "psnr_norm": norm["psnr"], "ssim_norm": norm["ssim"], "nmse_norm": norm["nmse"]})
    out = {"psnr": vol["psnr"], "ssim": vol["ssim"], "nmse": vol["nmse"], "background": bg, "slices": per}
    if contiguous(list(slices)):
        from medrecon.metrics3d import volume3d_metrics

        out["volume3d"] = volume3d_metrics(gt, pred, peak)
    return out


def _std(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def aggregate(volumes: list[dict]) -> dict:
    """Mean +- std over volumes (fastMRI) or slices, and the per-slice convention's mean +- std.

    Returns:
        ``{"psnr", "ssim", "nmse", "psnr_std", "ssim_std", "nmse_std", "spread", "per_slice": {...}}``
        where ``spread`` says what the fastMRI std runs over (``"volumes"`` or ``"slices"``).
    """
    slices = [s for v in volumes for s in v["slices"]]
    out: dict = {}
    by_volume = len(volumes) > 1
    for k in _NAMES + _EXTRA:
        out[k] = float(np.mean([v[k] for v in volumes]))
        out[f"{k}_std"] = _std([v[k] for v in volumes] if by_volume else [s[k] for s in slices])
    out["spread"] = "volumes" if by_volume else "slices"
    per = {}
    for k in _NAMES:
        vals = [s[f"{k}_norm"] for s in slices]
        per[k], per[f"{k}_std"] = float(np.mean(vals)), _std(vals)
    out["per_slice"] = per
    if volumes and all("volume3d" in v for v in volumes):
        out["volume3d"] = {k: float(np.mean([v["volume3d"][k] for v in volumes])) for k in VOLUME3D
                           if all(k in v["volume3d"] for v in volumes)}
    return out


def finite_or_none(x):
    """JSON has no NaN/Inf: such values become null."""
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_or_none(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    return None if isinstance(x, float) and not math.isfinite(x) else x
