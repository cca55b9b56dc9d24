"""The README's example figures: reference, baselines and the fast sampler, with fastMRI metrics and the
hallucination measure per panel.

Runs nothing itself: it reads the files the README's own commands write, so every number in the figure
comes from those commands. Usage:

    python benchmarks/readme_figures.py mri SIM_H5 OUT_PNG LABEL=RECON [LABEL=RECON ...] [--json OUT_JSON]
    python benchmarks/readme_figures.py ct  SIM_H5 OUT_PNG LABEL=RECON ...

MRI recon files are fastMRI-layout h5 (``reconstruction``); CT ones NIfTI in HU. The reference is the
simulation's ``reconstruction_rss`` (MRI) or ``target_hu`` (CT). One row per slice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medrecon.io.atomic import atomic_write  # noqa: E402
from medrecon.metrics import background_energy, center_crop, volume_metrics  # noqa: E402


def _read(path: str, modality: str) -> np.ndarray:
    if modality == "mri":
        with h5py.File(path, "r") as f:
            return f["reconstruction"][()].astype(np.float64)
    from medrecon.io.volumes import load_volume

    return np.asarray(load_volume(path, modality="CT").data, dtype=np.float64)  # the orientation recon read


def _reference(sim: str, modality: str) -> np.ndarray:
    with h5py.File(sim, "r") as f:
        return f["reconstruction_rss" if modality == "mri" else "target_hu"][()].astype(np.float64)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modality", choices=["mri", "ct"])
    ap.add_argument("sim")
    ap.add_argument("out")
    ap.add_argument("recons", nargs="+", metavar="LABEL=FILE")
    ap.add_argument("--json", default=None)
    ap.add_argument("--slice", type=int, default=None, help="draw only this slice (default: all)")
    a = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = _reference(a.sim, a.modality)
    off = 1000.0 if a.modality == "ct" else 0.0  # CT scored in HU + 1000 (air = 0), as the benchmark does
    panels, rows = [("reference", ref)], []
    for item in a.recons:
        label, path = item.split("=", 1)
        x = center_crop(_read(path, a.modality), ref.shape[-2:])
        if x.shape != ref.shape:
            raise SystemExit(f"{path}: shape {x.shape} does not match the reference {ref.shape}")
        m = volume_metrics(ref + off, x + off)
        bg = background_energy(ref + off, x + off)
        rows.append({"label": label, "file": Path(path).name, "psnr": round(m["psnr"], 2), "ssim": round(m["ssim"], 4),
                     "background_percent": round(100 * bg, 3)})
        panels.append((f"{label}\n{m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, bg {100 * bg:.2f}%", x))
    slices = range(ref.shape[0]) if a.slice is None else [a.slice]
    if a.modality == "mri":
        lo, hi = 0.0, float(np.percentile(ref, 99.5))
    else:
        lo, hi = -160.0, 240.0  # soft-tissue window (W 400, L 40)
    fig, axes = plt.subplots(len(slices), len(panels), figsize=(2.6 * len(panels), 2.9 * len(slices)), squeeze=False)
    for r, s in enumerate(slices):
        for c, (title, img) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img[s], cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
    fig.tight_layout()
    with atomic_write(Path(a.out)) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    if a.json:
        Path(a.json).write_text(json.dumps({"modality": a.modality, "sim": Path(a.sim).name, "rows": rows}, indent=1))
    for row in rows:
        print(f"{row['label']:>24s}: PSNR {row['psnr']:.2f} dB  SSIM {row['ssim']:.4f}  background {row['background_percent']:.3f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
