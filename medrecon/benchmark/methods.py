"""Run one benchmark method on one case through the same code path as ``medrecon recon``.

Time is wall-clock around the whole reconstruction (coil-map estimation included, data simulation
and prior loading excluded), with a CUDA synchronize on both ends. Memory is the CUDA peak of
allocated memory on a GPU, and on a CPU the growth of the process's peak resident set (Linux
``VmHWM``, reset before each method through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from medrecon import methods as registry
from medrecon.recon.config import ReconConfig, config_for

from .data import Case
from .manifest import RUN_KEYS, VOLUME_KEYS

__all__ = ["MethodRun", "PeakMemory", "peak_mem_kind", "recon_method", "run_method"]


def recon_method(method: str, modality: str) -> str:
    """Benchmark name -> ``ReconConfig.method``: CT ``cs-tv`` is the TV-regularized iterative ``tv``."""
    return "tv" if modality == "ct" and method == "cs-tv" else method


@dataclass
class MethodRun:
    """One method's output on one case.

    ``misfit``/``noise_misfit``: per slice, the data misfit ``||A x - y|| / ||y||`` of the output and the one the
    true image would have (:mod:`medrecon.sampling.consistency`); None where the output cannot be put through the
    forward operator (MRI classical methods return magnitudes).

    Shapes:
        image: ``(S, h, w)`` float32 (MRI magnitude, CT HU); misfit, noise_misfit: ``(S,)``.
    """

    image: np.ndarray
    seconds: float
    nfe: int
    peak_mem_mb: float
    params: dict
    peak_total_mb: float | None = None
    misfit: list[float] | None = None
    noise_misfit: list[float] | None = None


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_mem_kind(device: torch.device) -> str:
    """What ``peak_mem_mb`` measures on this device (for the report)."""
    if device.type == "cuda":
        return "CUDA torch.cuda.max_memory_allocated during the method (MiB, includes the prior's weights)"
    if _status_kb("VmHWM") is not None and _reset_hwm():
        return "CPU: growth of the process's peak resident set (VmHWM, reset before each method) over its RSS at the start (MiB)"
    return "CPU: growth of ru_maxrss during the method (MiB; a lower bound: 0 when an earlier step peaked higher)"


class PeakMemory:
    """Context manager measuring peak memory of the enclosed work in MiB (``.mb`` after exit)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb = 0.0
        self.total_mb: float | None = None  # absolute peak (CPU: VmHWM; CUDA: same as mb)

    def __enter__(self) -> PeakMemory:  # noqa: PYI034 - Self needs Python 3.11
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._hwm = _reset_hwm() and _status_kb("VmHWM") is not None
            self._base_kb = _status_kb("VmRSS") if self._hwm else self._maxrss_kb()
        return self

    @staticmethod
    def _maxrss_kb() -> int:
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r // 1024 if sys.platform == "darwin" else r  # macOS reports bytes, Linux KiB

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.total_mb = self.mb
        elif self._hwm:
            hwm = _status_kb("VmHWM") or 0
            self.mb = max(0, hwm - (self._base_kb or 0)) / 1024
            self.total_mb = hwm / 1024
        else:
            self.mb = max(0, self._maxrss_kb() - self._base_kb) / 1024


def _config(method: str, modality: str, settings: dict, device: torch.device, seed: int, progress: bool) -> ReconConfig:
    def typed(k, v):  # manifests and tuning grids are JSON: 50.0 for an int parameter becomes 50
        t = registry.param_field(k).type if k in registry.param_names() else ("int" if k in _RUN_INTS else None)
        return int(v) if t in ("int", int) else v

    settings = {k: typed(k, v) for k, v in settings.items()}
    run = {k: settings[k] for k in RUN_KEYS if k in settings}
    if not run.get("volume"):  # z_weight and slab on a method entry belong to its volume row
        run = {k: v for k, v in run.items() if k not in VOLUME_KEYS}
    return config_for(recon_method(method, modality), settings, device=str(device), seed=seed, progress=progress,
                      **run)


_RUN_INTS = ("samples", "batch_size", "slab")  # the integer ones of manifest.RUN_KEYS (JSON may give 50.0)


def _chunks(n: int, size: int | None) -> list[slice]:
    size = n if not size else max(1, int(size))
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def run_method(case: Case, method: str, settings: dict, device: torch.device, prior=None, seed: int = 0,
               progress: bool = False, slice_chunk: int | None = None) -> MethodRun:
    """Reconstruct every slice of ``case`` with ``method`` and the given settings.

    Args:
        case: the measurements and target.
        method: benchmark method name (``cs-tv`` on CT runs ``tv``).
        settings: manifest/tuned settings (``steps``, ``zeta``, ``lam``, ``iters``, ``samples``...).
        device: where to compute.
        prior: the loaded prior of the case's modality (dps/fast).
        seed: sampler seed.
        progress: sampler progress bars.
        slice_chunk: slices per call (bounds memory on large fastMRI volumes); all at once when None.
    """
    from medrecon.recon.ct import reconstruct_sinogram
    from medrecon.recon.mri import reconstruct_kspace
    from medrecon.recon.noncart import reconstruct_noncartesian

    cfg = _config(method, case.modality, settings, device, seed, progress)
    if cfg.volume:
        slice_chunk = None  # a volume is reconstructed in one call (its slabs are the sampler's)
    n = case.target.shape[0]
    images, nfe, params = [], 0, {}
    fits: list[dict | None] = []
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        for sl in _chunks(n, slice_chunk):
            if case.modality == "mri" and case.trajectory is not None:
                res = reconstruct_noncartesian(case.kspace[sl], case.trajectory, case.recon_size, cfg, device, prior,
                                               case.noise_std)
            elif case.modality == "mri":
                res = reconstruct_kspace(case.kspace[sl], case.mask, case.recon_size, cfg, device, prior,
                                         case.noise_std)
            else:
                res = reconstruct_sinogram(case.sinogram[sl], case.projector, cfg, device, case.mu_water,
                                           case.photons, prior)
            images.append(res.image)
            nfe, params = res.nfe, res.params
            fits.append(res.info.get("data_misfit"))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    params = {**params, "samples": cfg.samples} if registry.is_learned(method) else dict(params)
    total = None if mem.total_mb is None else round(mem.total_mb, 1)
    known = all(f is not None for f in fits)
    misfit = [v for f in fits for v in f["per_slice"]] if known else None
    noise = [v for f in fits for v in f["noise_misfit"]] if known else None
    return MethodRun(np.concatenate(images).astype(np.float32), seconds, int(nfe), round(mem.mb, 1), params, total,
                     misfit, noise)
