"""Reconstruct multi-coil MRI k-space with any method (classical or diffusion)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Optional

import numpy as np
import torch

from medrecon import methods as registry
from medrecon.errors import InputError
from medrecon.metrics import center_crop
from medrecon.acquisition.mri import CartesianSampling

from .config import ReconConfig
from .context import MriData
from .result import ReconResult, run_sampler, sampler_misfit, support_record
from .volume import check_volume

__all__ = ["reconstruct_kspace", "run_mri_method", "mask_for", "has_gaps"]


#: The flags of the acquisition options :attr:`ReconConfig.given` records, as the user typed them.
_FLAGS = {"accel": "--accel", "center_fraction": "--center-fraction", "mask_seed": "--mask-seed"}


def has_gaps(mask: np.ndarray) -> bool:
    """Whether a sampling mask skips lines between sampled ones: undersampling.

    Unsampled lines only at the edges (zero padding outside the encoded matrix, as fastMRI brain files
    have; partial Fourier) are not gaps: such k-space is fully sampled where it was acquired. A 2-D mask
    has a gap when a row or a column has an unsampled point between two sampled ones.

    Shapes: mask ``(W,)`` or ``(H, W)`` bool.
    """
    m = np.atleast_2d(np.asarray(mask, dtype=bool))
    for lines in (m, m.T):
        count = lines.sum(axis=1)
        first = lines.argmax(axis=1)
        last = lines.shape[1] - 1 - lines[:, ::-1].argmax(axis=1)
        if np.any((count > 0) & (last - first + 1 != count)):
            return True
    return False


def _data_mask(kspace: np.ndarray) -> np.ndarray:
    """The samples that hold data: whole columns for Cartesian k-space, else every non-zero ``(H, W)`` sample."""
    sampled = np.abs(kspace).sum(axis=tuple(range(kspace.ndim - 2))) > 0
    if sampled.all(axis=0).any() and (sampled.any(axis=0) == sampled.all(axis=0)).all():
        return sampled.all(axis=0)  # Cartesian: whole columns sampled
    return sampled


def mask_for(kspace: np.ndarray, file_mask: Optional[np.ndarray], cfg: ReconConfig) -> tuple[np.ndarray, dict]:
    """The sampling mask: the file's own (test files, simulations) or a fastMRI mask from the options.

    A file that is already undersampled (it carries a mask, or its k-space skips lines: :func:`has_gaps`)
    is refused with ``--mask``: a second mask on top would give an unknown, stronger undersampling. The
    options that only act with ``--mask`` (``--accel``, ``--center-fraction``, ``--mask-seed``), given
    explicitly (``cfg.given``) when no mask is drawn, are ignored: ``info`` then has ``ignored`` (the flags)
    and a one-line ``warning``, which the caller prints and the run record keeps.

    Returns ``(mask, info)`` with mask ``(W,)`` or ``(H, W)`` bool.

    Raises:
        InputError: ``--mask`` for a file that is already undersampled.
    """
    w = kspace.shape[-1]
    if file_mask is not None:
        own, kind, source = np.asarray(file_mask, dtype=bool), "from file", "its own mask"
        undersampled = not own.all()
    else:
        own, kind, source = _data_mask(kspace), "from data (non-zero samples)", "its k-space skips lines"
        undersampled = has_gaps(own)
    accel = round(own.size / max(1, int(own.sum())), 2)
    if cfg.mask:
        if file_mask is not None:
            raise InputError("this file is already undersampled (it carries a 'mask'); drop --mask")
        if undersampled:
            raise InputError(f"this file is already undersampled ({source}, {accel:.1f}x); drop --mask")
        seed = cfg.mask_seed if cfg.mask_seed is not None else cfg.seed
        m = CartesianSampling(cfg.mask, cfg.accel, cfg.center_fraction, seed).mask(w)
        return m, {"kind": cfg.mask, "acceleration": cfg.accel, "center_fraction": cfg.center_fraction, "seed": seed}
    info: dict = {"kind": kind, "acceleration": accel}
    ignored = [flag for key, flag in _FLAGS.items() if key in cfg.given]
    if ignored:
        if undersampled:
            reason = f"the file is already undersampled ({source}, {accel:.1f}x)"
        else:
            reason = "they act only with --mask; the fully sampled k-space is reconstructed as it is"
        info["ignored"] = ignored
        info["warning"] = f"warning: {' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored: {reason}"
    return own, info


def reconstruct_kspace(kspace: np.ndarray, mask: np.ndarray, recon_size: tuple[int, int], cfg: ReconConfig,
                       device: torch.device, prior=None, noise_std: Optional[float] = None,
                       maps: Optional[np.ndarray] = None) -> ReconResult:
    """Reconstruct ``(S, C, H, W)`` k-space; output magnitude cropped to ``recon_size``.

    Args:
        kspace: complex k-space (already masked, or fully sampled: the mask is applied here).
        mask: ``(W,)`` or ``(H, W)`` bool.
        recon_size: fastMRI crop ``(h, w)``.
        cfg: method settings.
        device: where to compute.
        prior: a loaded prior (learned methods).
        noise_std: k-space noise std per sample when known.
        maps: coil maps ``(S, C, H, W)`` stored with the k-space (validated by the reader), or None:
            ESPIRiT estimates them from the calibration region.
    """
    k = torch.from_numpy(np.ascontiguousarray(kspace)).to(device, torch.complex64)
    m = torch.from_numpy(np.asarray(mask, dtype=bool)).to(device)
    if not bool(m.any()):
        raise InputError("the sampling mask selects no k-space samples")
    mask2d = m if m.dim() == 2 else m[None, :].expand(k.shape[-2], -1)
    k = k * mask2d + 0.0
    if not bool(k.abs().amax() > 0):
        raise InputError("the k-space is all zeros")
    cfg.method_settings("mri")  # invalid settings fail before any work
    t0 = time.perf_counter()
    info: dict = {}
    if maps is not None:
        maps = torch.from_numpy(np.ascontiguousarray(maps)).to(device, torch.complex64)
    noise_var = None if noise_std is None else torch.full((k.shape[0],), float(noise_std) ** 2, device=device)
    if cfg.volume:
        check_volume(int(k.shape[0]))
        info["volume"] = {"z_weight": cfg.effective_z_weight("mri"), "slab": cfg.slab}
    data = MriData(k, mask2d, m, maps, noise_var, progress=cfg.progress, z_weight=cfg.effective_z_weight("mri"))
    return run_mri_method(data, cfg, prior, recon_size, info, t0)


def run_mri_method(data, cfg: ReconConfig, prior, recon_size: tuple[int, int], info: dict,
                   t0: float) -> ReconResult:
    """Run ``cfg.method`` on prepared MRI data (:class:`~.context.MriData` or :class:`~.context.NonCartesianData`)
    and crop the magnitude (and std) to ``recon_size``: the one place a Cartesian and a non-Cartesian
    reconstruction meet. ``t0`` is when the reconstruction started (``time.perf_counter``)."""
    spec = registry.get(cfg.method)
    settings = cfg.method_settings("mri")
    params = asdict(settings)
    std, nfe = None, 0
    if spec.learned:
        prob = data.problem(prior, support=cfg.support != "none")
        info["support"] = support_record(prob)
        res = run_sampler(cfg, prior, prob, params, "mri")
        img, std, nfe = res.mean.abs(), res.std, res.nfe
        info["data_misfit"] = sampler_misfit(res)
    else:
        img = spec.runner("mri")(data, settings)
    seconds = time.perf_counter() - t0
    crop = tuple(min(a, b) for a, b in zip(recon_size, img.shape[-2:]))
    out = center_crop(img.float().cpu().numpy(), crop)
    std_np = None if std is None else center_crop(std.float().cpu().numpy(), crop)
    return ReconResult(out.astype(np.float32), std_np, "mri", params, nfe, seconds, info)
