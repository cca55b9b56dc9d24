"""Reconstruct non-Cartesian (radial, spiral) multi-coil k-space with any MRI method (issue 20).

The methods are the Cartesian path's, unchanged: they see a :class:`~medrecon.recon.context.NonCartesianData`,
whose operator is the NUFFT SENSE model (:class:`operators.nufft.NonCartesianMRI`), and ``zero-filled`` becomes
gridding (the density-compensated adjoint).
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch

from medrecon.errors import InputError

from .config import ReconConfig
from .context import NonCartesianData
from .mri import run_mri_method
from .result import ReconResult
from .volume import check_volume

__all__ = ["reconstruct_noncartesian", "density_compensation"]


def density_compensation(trajectory: torch.Tensor, shape: tuple[int, int],
                         given: Optional[np.ndarray] = None) -> torch.Tensor:
    """The density compensation ``(M,)``: the file's, else Pipe-Menon iterations on the trajectory
    (:func:`operators.trajectories.pipe_menon_dcf`)."""
    if given is not None:
        d = torch.as_tensor(np.asarray(given, dtype=np.float32)).reshape(-1)
        if d.numel() != trajectory.reshape(-1, 2).shape[0] or not bool(torch.isfinite(d).all()) or bool((d < 0).any()):
            raise InputError(f"the density compensation must hold {trajectory.reshape(-1, 2).shape[0]} finite "
                             f"non-negative weights, got {d.numel()}")
        return d.to(trajectory.device)
    from operators.trajectories import pipe_menon_dcf

    return torch.as_tensor(pipe_menon_dcf(trajectory.reshape(-1, 2).cpu(), tuple(shape))).float().to(trajectory.device)


def reconstruct_noncartesian(kspace: np.ndarray, trajectory: np.ndarray, shape: tuple[int, int], cfg: ReconConfig,
                             device: torch.device, prior=None, noise_std: Optional[float] = None,
                             maps: Optional[np.ndarray] = None, dcf: Optional[np.ndarray] = None,
                             recon_size: Optional[tuple[int, int]] = None) -> ReconResult:
    """Reconstruct ``(S, C, M)`` non-Cartesian k-space on an ``(H, W)`` matrix; output magnitude ``(S, h, w)``.

    Args:
        kspace: complex samples in the trajectory's order.
        trajectory: ``(M, 2)`` radians per pixel, checked by the reader.
        shape: the image matrix ``(H, W)``.
        cfg: method settings (``--mask`` and its options do not apply).
        device: where to compute.
        prior: a loaded prior (learned methods).
        noise_std: k-space noise std per sample when known.
        maps: coil maps ``(S, C, H, W)`` from the file, or None (ESPIRiT on the gridded centre).
        dcf: ``(M,)`` density compensation from the file, or None (Pipe-Menon).
        recon_size: crop of the output, default the whole matrix.
    """
    if cfg.mask:
        raise InputError("--mask undersamples Cartesian k-space; this file is non-Cartesian (it has a trajectory): "
                         "drop --mask, or simulate fewer spokes")
    k = torch.from_numpy(np.ascontiguousarray(kspace)).to(device, torch.complex64)
    if not bool(k.abs().amax() > 0):
        raise InputError("the k-space is all zeros")
    t = torch.from_numpy(np.ascontiguousarray(trajectory, dtype=np.float32)).reshape(-1, 2).to(device)
    if t.shape[0] != k.shape[-1]:
        raise InputError(f"the trajectory has {t.shape[0]} samples but the k-space has {k.shape[-1]} per coil")
    cfg.method_settings("mri")  # invalid settings fail before any work
    t0 = time.perf_counter()
    info: dict = {"trajectory": {"samples": int(t.shape[0]), "matrix": [int(shape[0]), int(shape[1])],
                                 "dcf": "from the file" if dcf is not None else "Pipe-Menon"}}
    w = density_compensation(t, shape, dcf)
    if maps is not None:
        maps = torch.from_numpy(np.ascontiguousarray(maps)).to(device, torch.complex64)
    noise_var = None if noise_std is None else torch.full((k.shape[0],), float(noise_std) ** 2, device=device)
    if cfg.volume:
        check_volume(int(k.shape[0]))
        info["volume"] = {"z_weight": cfg.effective_z_weight("mri"), "slab": cfg.slab}
    data = NonCartesianData(k, t, tuple(int(s) for s in shape), w, maps, noise_var, progress=cfg.progress,
                            z_weight=cfg.effective_z_weight("mri"))
    return run_mri_method(data, cfg, prior, tuple(recon_size or shape), info, t0)
