"""Training images from fully sampled fastMRI multi-coil (or single-coil) k-space files.

Each slice is reconstructed as the root-sum-of-squares of the inverse centered FFT (fastMRI's own
target definition) and centre-cropped to the header's reconstruction matrix. The complex MRI prior
then gets the same smooth synthetic phase as other magnitude sources (a limitation: the true coil-
combined phase is not used yet).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medrecon.errors import InputError

__all__ = ["fastmri_training_slices"]


def fastmri_training_slices(path: Path, fov_mm: float = 140.0) -> tuple[np.ndarray, float]:
    """``(S, h, w)`` float32 RSS magnitudes and the pixel size in mm (``fov_mm / w``, knee default)."""
    from medrecon.io.fastmri import read_fastmri
    from medrecon.metrics import center_crop
    from operators import rss
    from operators.fft import ifft2c

    vol = read_fastmri(path)
    if vol.mask is not None:
        raise InputError(f"{Path(path).name} is undersampled (it carries a mask); train on fully sampled files")
    mags = []
    for s in range(vol.kspace.shape[0]):
        k = torch.from_numpy(np.ascontiguousarray(vol.kspace[s]))
        mags.append(center_crop(rss(ifft2c(k)).numpy(), tuple(vol.recon_size)))
    out = np.stack(mags).astype(np.float32)
    return out, fov_mm / out.shape[-1]
