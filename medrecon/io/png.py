"""PNG figures of reconstructions (a row of slices, and the std map below when present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrecon.io.atomic import atomic_write
from medrecon.io.guards import require_finite

__all__ = ["write_png"]


def write_png(path, image: np.ndarray, std: np.ndarray | None = None, modality: str = "mri",
              title: str = "", max_slices: int = 8) -> Path:
    """Write up to ``max_slices`` slices of ``image`` ``(S, H, W)`` (CT in HU, window 40/400) as one PNG."""
    require_finite(image, "the PNG image")
    if std is not None:
        require_finite(std, "the posterior std map")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(max_slices, image.shape[0])
    rows = 2 if std is not None else 1
    fig, axes = plt.subplots(rows, n, figsize=(2.4 * n, 2.5 * rows), squeeze=False)
    vmin, vmax = (-160.0, 240.0) if modality == "ct" else (0.0, float(np.percentile(image[:n], 99.5)) or 1.0)
    for i in range(n):
        axes[0, i].imshow(image[i], cmap="gray", vmin=vmin, vmax=vmax)
        axes[0, i].set_title(f"slice {i}", fontsize=8)
        if std is not None:
            axes[1, i].imshow(std[i], cmap="viridis")
            axes[1, i].set_title("posterior std", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
