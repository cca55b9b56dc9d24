"""Benchmark figures: a representative test slice per dataset, every method, and its error map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrecon.metrics import center_crop

from .data import Case
from .manifest import Dataset

__all__ = ["dataset_figure", "reformat_figure"]

CT_WINDOW = (-160.0, 240.0)  # abdominal soft-tissue window (level 40 HU, width 400 HU)


def _slice_scores(rows: list[dict], method: str, index: int) -> str:
    for r in rows:
        if r["method"] == method and r.get("volumes"):
            s = r["volumes"][0]["slices"][index]
            return f"{s['psnr']:.2f} dB / {s['ssim']:.3f}"
    return ""


def dataset_figure(ds: Dataset, case: Case, images: dict[str, np.ndarray], rows: list[dict], out_dir: Path) -> Path:
    """Draw reference + each method (top) and ``|method - reference|`` (bottom) for the middle test slice.

    Args:
        ds: the dataset (for the title).
        case: the first test volume (its target is the reference).
        images: method -> reconstruction ``(S, H, W)`` of ``case``.
        rows: the dataset's result rows (slice scores for the titles).
        out_dir: folder to write ``<dataset>_slice<k>.png`` into.

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i = len(case.slices) // 2
    ref = case.target[i].astype(np.float64)
    if ds.modality == "ct":
        vmin, vmax = CT_WINDOW
    else:
        vmin, vmax = 0.0, float(np.percentile(ref, 99.5))
    err_max = 0.25 * (vmax - vmin)
    methods = list(images)
    ncol = len(methods) + 1
    fig, axes = plt.subplots(2, ncol, figsize=(2.2 * ncol + 0.8, 5.2), squeeze=False, layout="constrained")
    axes[0, 0].imshow(ref, cmap="gray", vmin=vmin, vmax=vmax)
    axes[0, 0].set_title("reference", fontsize=8)
    axes[1, 0].axis("off")
    im = None
    for j, m in enumerate(methods, start=1):
        pred = center_crop(images[m][i].astype(np.float64), ref.shape)
        axes[0, j].imshow(pred, cmap="gray", vmin=vmin, vmax=vmax)
        axes[0, j].set_title(f"{m}\n{_slice_scores(rows, m, i)}", fontsize=8)
        im = axes[1, j].imshow(np.abs(pred - ref), cmap="magma", vmin=0, vmax=err_max)
        axes[1, j].set_title(f"|{m} - reference|", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if im is not None:
        fig.colorbar(im, ax=axes[:, -1].tolist(), shrink=0.6, label="|error| (HU)" if ds.modality == "ct" else "|error|")
    unit = f"window {vmin:.0f}..{vmax:.0f} HU" if ds.modality == "ct" else "magnitude"
    fig.suptitle(f"{ds.name}: {case.volume} slice {case.slices[i]} ({unit})\n"
                 "PSNR / SSIM of this slice, volume max as peak (fastMRI convention)", fontsize=8)
    return _save(fig, out_dir / f"{ds.name}_slice{case.slices[i]}.png")


def _save(fig, path: Path) -> Path:
    """Write a figure atomically (100 dpi PNG), close it, return the path."""
    import matplotlib.pyplot as plt

    from medrecon.io.atomic import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _window(ds: Dataset, ref: np.ndarray) -> tuple[float, float]:
    return CT_WINDOW if ds.modality == "ct" else (0.0, float(np.percentile(ref, 99.5)))


def _object_span(ref: np.ndarray, axis: int, level: float) -> slice:
    """The index range along in-plane ``axis`` (1 rows, 2 columns) where the reference rises above ``level``."""
    prof = np.abs(ref).max(axis=tuple(a for a in range(3) if a != axis))
    idx = np.flatnonzero(prof > level)
    return slice(0, ref.shape[axis]) if idx.size == 0 else slice(int(idx[0]), int(idx[-1]) + 1)


def reformat_figure(ds: Dataset, case: Case, images: dict[str, np.ndarray], rows: list[dict], out_dir: Path) -> Path:
    """The volume's sagittal and coronal reformats through its centre: one row per image (reference, then every
    method, slice-by-slice and volume-mode rows in order), cropped to the object. Slices are stretched along z by
    an integer factor (nearest neighbour, said in the title) so a thin slab stays readable; stripes of
    independent slices show as horizontal lines. Row labels give the reformat PSNR / SSIM (mean over the planes
    that cross the object, :mod:`medrecon.metrics3d`).

    Returns:
        The PNG path ``<dataset>_reformats.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = case.target.astype(np.float64)
    vmin, vmax = _window(ds, ref)
    level = vmin + 0.05 * (vmax - vmin) if ds.modality == "ct" else 0.05 * float(ref.max())
    s, h, w = ref.shape
    rows_span, cols_span = _object_span(ref, 1, level), _object_span(ref, 2, level)
    aspect = float(case.info.get("slice_mm", 1.0)) / float(case.info.get("pixel_mm", 1.0) or 1.0)
    width = max(rows_span.stop - rows_span.start, cols_span.stop - cols_span.start)
    stretch = max(1, int(round(0.3 * width / (s * aspect))))
    views = (("sagittal", lambda v: v[:, rows_span, w // 2], "sag"), ("coronal", lambda v: v[:, h // 2, cols_span], "cor"))
    names = ["reference", *images]
    scores = {r["method"]: r.get("volume3d") or {} for r in rows}
    fig, axes = plt.subplots(len(names), 2, figsize=(9.0, 1.0 + 1.35 * len(names)), squeeze=False, layout="constrained")
    for i, name in enumerate(names):
        vol = ref if name == "reference" else center_crop(images[name].astype(np.float64), ref.shape[-2:])
        for j, (label, cut, key) in enumerate(views):
            ax = axes[i, j]
            ax.imshow(cut(vol)[::-1], cmap="gray", vmin=vmin, vmax=vmax, aspect=aspect * stretch,
                      interpolation="nearest")
            sc = scores.get(name, {})
            extra = f": {sc[key + '_psnr']:.2f} dB / {sc[key + '_ssim']:.3f}" if f"{key}_psnr" in sc else ""
            ax.set_title(f"{name}, {label}{extra}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    unit = f"window {vmin:.0f}..{vmax:.0f} HU" if ds.modality == "ct" else "magnitude"
    z = f"z stretched {stretch}x, " if stretch > 1 else ""
    fig.suptitle(f"{ds.name}: reformats of slices {case.slices[0]}-{case.slices[-1]} ({unit}; {z}"
                 f"{case.info.get('slice_mm', '?')} mm slices)\nPSNR / SSIM: mean over the reformat planes that cross "
                 "the object", fontsize=8)
    return _save(fig, out_dir / f"{ds.name}_reformats.png")
