"""Classical reconstruction baselines, reported beside the diffusion samplers.

MRI: fastMRI's zero-filled RSS, CG-SENSE, l1-wavelet CS (FISTA) and TV CS (Chambolle-Pock).
CT: filtered backprojection and TV-regularised iterative reconstruction (preconditioned
Chambolle-Pock). All pure torch, batched over leading dims, on the device of their inputs.
"""

from .ct import fbp, tv_iterative
from .mri import cg_sense, cs_tv, cs_wavelet, max_eigenvalue, total_variation, zero_filled
from .wavelets import DWT2, dwt2, idwt2, max_level, soft_threshold, wavelet_filter

__all__ = [
    "DWT2",
    "cg_sense",
    "cs_tv",
    "cs_wavelet",
    "dwt2",
    "fbp",
    "idwt2",
    "max_eigenvalue",
    "max_level",
    "soft_threshold",
    "total_variation",
    "tv_iterative",
    "wavelet_filter",
    "zero_filled",
]
