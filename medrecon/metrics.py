"""Image-quality metrics exactly as fastMRI's ``evaluate.py`` computes them, plus the per-slice
convention many diffusion papers use (reported separately, never mixed).

fastMRI convention (``volume_metrics``), per volume of shape ``(slices, h, w)``:

- ``NMSE = ||gt - pred||^2 / ||gt||^2`` over the whole volume;
- ``PSNR = skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=gt.max())`` over the
  whole volume, i.e. ``10 log10(max(gt)^2 / MSE)``;
- ``SSIM`` = mean over slices of ``skimage.metrics.structural_similarity(gt[i], pred[i],
  data_range=gt.max())`` with skimage's defaults (7x7 uniform window, K1 0.01, K2 0.03, sample
  covariance, mean over the region the window fits in). ``data_range`` is the max of the whole
  VOLUME, not of each slice.

Across volumes fastMRI reports the mean and ``2 * std`` (runstats' sample std, ddof=1).

Per-slice convention (``per_slice_metrics``): each slice of ``gt`` and each slice of ``pred`` is
divided by its own maximum, then PSNR/SSIM use ``data_range=1`` and the metrics are averaged over
slices. Numbers from the two conventions are not comparable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medrecon.errors import InputError

__all__ = [
    "BACKGROUND_LEVEL",
    "BACKGROUND_MARGIN",
    "background_energy",
    "background_mask",
    "TARGET_KEYS",
    "center_crop",
    "evaluate_folders",
    "format_summary",
    "mse",
    "nmse",
    "per_slice_metrics",
    "psnr",
    "ssim",
    "volume_metrics",
]

#: Target datasets tried in order when ``target_key`` is not given (multicoil, then singlecoil).
TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")
_METRIC_NAMES = ("mse", "nmse", "psnr", "ssim")


def mse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Mean squared error over all elements."""
    return float(np.mean((gt - pred) ** 2))


def nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    """Normalized MSE ``||gt - pred||^2 / ||gt||^2`` (fastMRI ``nmse``)."""
    return float(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)


def psnr(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """PSNR over the whole array with ``data_range = gt.max()`` unless ``maxval`` is given."""
    maxval = gt.max() if maxval is None else maxval
    return float(peak_signal_noise_ratio(gt, pred, data_range=maxval))


def ssim(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> float:
    """Mean over slices of skimage SSIM with ``data_range = gt.max()`` of the whole volume.

    Shapes:
        gt, pred: ``(slices, h, w)``.
    """
    if gt.ndim != 3:
        raise InputError(f"SSIM needs a (slices, h, w) volume, got {gt.ndim} dimensions; add a slice axis")
    if gt.shape != pred.shape:
        raise InputError(f"SSIM shapes differ: target {gt.shape} vs reconstruction {pred.shape}; crop first")
    maxval = gt.max() if maxval is None else maxval
    # skimage defaults = fastMRI: win_size 7, uniform window, K1 0.01, K2 0.03, sample covariance.
    total = 0.0
    for i in range(gt.shape[0]):
        total += structural_similarity(gt[i], pred[i], data_range=maxval)
    return float(total / gt.shape[0])


#: Reference level below which a pixel may be background, as a fraction of the volume maximum.
BACKGROUND_LEVEL = 0.05
#: Pixels within this many pixels of the object are not background (edge blur is not invention).
BACKGROUND_MARGIN = 3


def background_mask(gt: np.ndarray, level: float = BACKGROUND_LEVEL, margin: int = BACKGROUND_MARGIN) -> np.ndarray:
    """Where the reference is background: farther than ``margin`` px from any pixel above ``level * max``.

    The rule is per slice in-plane (the dilation does not cross slices); the maximum is the volume's,
    as in the fastMRI metrics. CT references are scored in HU + 1000 (air ~ 0), MRI in magnitude.

    Shapes:
        gt: ``(slices, h, w)`` -> bool ``(slices, h, w)``.
    """
    from scipy.ndimage import binary_dilation

    gt = np.asarray(gt, dtype=np.float64)
    obj = gt > level * gt.max()
    if margin > 0:
        disk = np.add.outer(np.arange(-margin, margin + 1) ** 2, np.arange(-margin, margin + 1) ** 2) <= margin ** 2
        obj = binary_dilation(obj, structure=disk[None])
    return ~obj


def background_energy(gt: np.ndarray, pred: np.ndarray, level: float = BACKGROUND_LEVEL,
                      margin: int = BACKGROUND_MARGIN) -> float:
    """Hallucination measure: energy a reconstruction puts in the reference's background, per object energy.

    ``sum_{bg} pred^2 / sum_{obj} gt^2`` with the background of :func:`background_mask` and the object
    ``gt > level * max``. 0 for a reconstruction that is empty wherever the reference is; aliasing,
    noise and invented structure in the background all raise it. ``pred`` is centre-cropped to ``gt``.

    Shapes:
        gt, pred: ``(slices, h, w)`` real, same scale (CT: HU + 1000).
    """
    gt, pred = _check_pair(gt, pred)
    gt, pred = gt.astype(np.float64), pred.astype(np.float64)
    bg = background_mask(gt, level, margin)
    obj = gt > level * gt.max()
    return float((pred[bg] ** 2).sum() / (gt[obj] ** 2).sum())


def center_crop(x: Any, shape: tuple[int, int]) -> Any:
    """Crop the last two axes to ``shape`` around the centre (fastMRI: ``from = (dim - target)//2``).

    Works on numpy arrays and torch tensors.

    Shapes:
        x: ``(..., H, W)`` -> ``(..., shape[0], shape[1])``.
    """
    h, w = int(shape[0]), int(shape[1])
    if x.ndim < 2 or not (0 < h <= x.shape[-2] and 0 < w <= x.shape[-1]):
        raise InputError(
            f"cannot centre-crop an image of shape {tuple(x.shape)} to {(h, w)}; "
            "the image must be at least as large as the crop"
        )
    top = (x.shape[-2] - h) // 2
    left = (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (target, reconstruction) pair and crop the reconstruction to the target."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    for name, a in (("target", gt), ("reconstruction", pred)):
        if np.iscomplexobj(a):
            raise InputError(f"{name} is complex; pass magnitude images (np.abs) to the metrics")
        if a.ndim == 2:
            raise InputError(f"{name} is 2-D; metrics need (slices, h, w), use x[None] for one slice")
        if a.ndim != 3:
            raise InputError(f"{name} has {a.ndim} dimensions; metrics need (slices, h, w)")
    # Integer images would wrap around in (gt - pred) ** 2; floats are kept in their own dtype.
    gt = gt if np.issubdtype(gt.dtype, np.floating) else gt.astype(np.float64)
    pred = pred if np.issubdtype(pred.dtype, np.floating) else pred.astype(np.float64)
    if gt.shape[0] != pred.shape[0]:
        raise InputError(
            f"target has {gt.shape[0]} slices but reconstruction has {pred.shape[0]}; reconstruct every slice"
        )
    if pred.shape[1:] != gt.shape[1:]:
        pred = center_crop(pred, gt.shape[1:])
    if not np.all(np.isfinite(pred)):
        raise InputError("reconstruction contains NaN or Inf; check the sampler output")
    if not gt.max() > 0:
        raise InputError("target maximum is not positive; PSNR/SSIM are undefined for it")
    return gt, pred


def volume_metrics(gt: np.ndarray, pred: np.ndarray, maxval: float | None = None) -> dict[str, float]:
    """fastMRI metrics of one volume: ``{"mse", "nmse", "psnr", "ssim"}``.

    ``pred`` is centre-cropped to ``gt``'s in-plane size when larger. Arrays are used in their
    own float dtype, as fastMRI does with the float32 arrays it reads.

    Shapes:
        gt: ``(slices, h, w)``; pred: ``(slices, H, W)`` with ``H >= h, W >= w``.
    """
    gt, pred = _check_pair(gt, pred)
    return {
        "mse": mse(gt, pred),
        "nmse": nmse(gt, pred),
        "psnr": psnr(gt, pred, maxval),
        "ssim": ssim(gt, pred, maxval),
    }


def per_slice_metrics(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Per-slice-normalized metrics (the convention of many diffusion-MRI papers), NOT fastMRI's.

    Each slice of ``gt`` and of ``pred`` is divided by its own maximum (float64), then per slice
    PSNR and SSIM use ``data_range=1`` and NMSE is computed on the normalized slices; the result is
    the mean over slices. Slices whose target maximum is not positive are skipped and counted.

    Returns:
        ``{"psnr", "ssim", "nmse", "n_slices", "skipped_slices"}``.
    """
    gt, pred = _check_pair(gt, pred)
    values: dict[str, list[float]] = {"psnr": [], "ssim": [], "nmse": []}
    skipped = 0
    for g, p in zip(gt.astype(np.float64), pred.astype(np.float64)):
        g_max, p_max = g.max(), p.max()
        if not g_max > 0:
            skipped += 1
            continue
        g = g / g_max
        p = p / p_max if p_max > 0 else p
        values["psnr"].append(float(peak_signal_noise_ratio(g, p, data_range=1.0)))
        values["ssim"].append(float(structural_similarity(g, p, data_range=1.0)))
        values["nmse"].append(nmse(g, p))
    if not values["psnr"]:
        raise InputError("every target slice is zero; per-slice metrics are undefined")
    out: dict[str, float] = {k: float(np.mean(v)) for k, v in values.items()}
    out["n_slices"] = len(values["psnr"])
    out["skipped_slices"] = skipped
    return out


def _summarize(per_volume: Mapping[str, Mapping[str, float]], names: tuple[str, ...]) -> dict[str, Any]:
    """Mean, sample std (ddof=1, as fastMRI's runstats) and 2*std of each metric over volumes."""
    mean, std = {}, {}
    for name in names:
        vals = np.array([m[name] for m in per_volume.values()], dtype=np.float64)
        mean[name] = float(vals.mean())
        std[name] = float(vals.std(ddof=1)) if vals.size > 1 else math.nan
    return {
        "volumes": {k: dict(v) for k, v in per_volume.items()},
        "mean": mean,
        "std": std,
        "two_std": {k: 2 * v for k, v in std.items()},
    }


def _read_dataset(path: Path, keys: tuple[str, ...], role: str) -> tuple[np.ndarray, str]:
    """Read the first of ``keys`` present in the HDF5 file ``path``."""
    if not h5py.is_hdf5(path):
        raise InputError(f"{role} file {path.name} is not an HDF5 file; give fastMRI .h5 files")
    try:
        with h5py.File(path, "r") as f:
            for key in keys:
                if key in f:
                    ds = f[key]
                    if ds.ndim != 3:
                        raise InputError(f"{role} {path.name}:{key} has shape {ds.shape}; expected (slices, h, w)")
                    return np.asarray(ds[()]), key
            present = ", ".join(sorted(f.keys())) or "none"
    except OSError as exc:
        raise InputError(f"cannot read {role} file {path.name} ({exc}); the file may be truncated") from exc
    raise InputError(f"{role} file {path.name} has no dataset {' or '.join(keys)} (found: {present})")


def fastmri_crop(target: np.ndarray, recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fastMRI evaluate.py crops both to ``(w, w)`` with ``w = target.shape[-1]``: ``evaluate``, ``recon``'s
    printed metrics and its run record all score MRI this way, so they agree on the same file (issue 25)."""
    w = target.shape[-1]
    shape = (min(w, target.shape[-2]), w)  # identical to fastMRI wherever fastMRI does not fail
    target = center_crop(target, shape)
    if recon.shape[-2] < shape[0] or recon.shape[-1] < shape[1]:
        raise InputError(
            f"reconstruction in-plane size {recon.shape[-2:]} is smaller than the target crop {shape}; "
            "write reconstructions at least as large as the target"
        )
    return target, center_crop(recon, shape)


def evaluate_folders(target_dir: str | Path, recon_dir: str | Path, target_key: str | None = None,
                     volume: bool = False) -> dict[str, Any]:
    """Score every ``recon_dir/*.h5`` against the same-named file in ``target_dir``.

    Targets are read from ``target_key``, or else ``reconstruction_rss`` then
    ``reconstruction_esc``; reconstructions from ``reconstruction``. Both are centre-cropped as
    fastMRI's evaluate.py does.

    Returns:
        ``{"n_volumes", "target_keys": {name: key}, "fastmri": summary, "per_slice": summary}``, with ``volume``
        also ``"volume3d": summary`` of :func:`medrecon.metrics3d.volume3d_metrics` (each file's slices taken as
        one contiguous volume: 3-D SSIM, sagittal/coronal reformat PSNR and SSIM, slice-difference PSNR), where a summary is ``{"volumes": {name: metrics}, "mean", "std", "two_std"}``
        (``std`` is the sample std, NaN for a single volume).

    Raises:
        InputError: missing/empty folders, a reconstruction without a target, missing datasets,
            or shapes that cropping cannot reconcile.
    """
    target_dir, recon_dir = Path(target_dir), Path(recon_dir)
    for role, folder in (("target", target_dir), ("reconstruction", recon_dir)):
        if not folder.is_dir():
            raise InputError(f"{role} folder {folder} does not exist")
    recon_files = sorted(p for p in recon_dir.glob("*.h5") if p.is_file())
    if not recon_files:
        raise InputError(f"no .h5 reconstructions in {recon_dir}; run the reconstruction first")
    keys = (target_key,) if target_key else TARGET_KEYS
    fastmri_vals: dict[str, dict[str, float]] = {}
    slice_vals: dict[str, dict[str, float]] = {}
    used_keys: dict[str, str] = {}
    vol_vals: dict[str, dict[str, float]] = {}
    from medrecon.io import privacy

    for recon_path in recon_files:
        target_path = target_dir / recon_path.name
        # identifiers in the targets (and names that repeat them) join the privacy layer before any is printed
        privacy.register_inputs([target_path, recon_path])
        if not target_path.is_file():
            raise InputError(f"no target {recon_path.name} in {target_dir}; every reconstruction needs its target")
        target, used_keys[recon_path.name] = _read_dataset(target_path, keys, "target")
        recon, _ = _read_dataset(recon_path, ("reconstruction",), "reconstruction")
        if target.shape[0] != recon.shape[0]:
            raise InputError(f"{recon_path.name}: target has {target.shape[0]} slices, reconstruction {recon.shape[0]}")
        target, recon = fastmri_crop(target, recon)
        fastmri_vals[recon_path.name] = volume_metrics(target, recon)
        slice_vals[recon_path.name] = per_slice_metrics(target, recon)
        if volume:
            from medrecon.metrics3d import volume3d_metrics

            vol_vals[recon_path.name] = volume3d_metrics(target, recon)
    extra = {}
    if volume:
        names = tuple(sorted(set.intersection(*(set(v) for v in vol_vals.values()))))
        extra["volume3d"] = _summarize(vol_vals, names)
    return {
        "n_volumes": len(recon_files),
        "target_keys": used_keys,
        "fastmri": _summarize(fastmri_vals, _METRIC_NAMES),
        "per_slice": _summarize(slice_vals, ("nmse", "psnr", "ssim")),
        **extra,
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """fastMRI-style line ``NAME = mean +/- 2*std`` for one summary from :func:`evaluate_folders`."""
    return " ".join(
        f"{name.upper()} = {summary['mean'][name]:.4g} +/- {summary['two_std'][name]:.4g}"
        for name in sorted(summary["mean"])
    )
