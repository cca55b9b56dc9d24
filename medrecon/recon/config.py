"""Settings of one reconstruction (what ``medrecon recon`` parses its arguments into)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

__all__ = ["ReconConfig", "MRI_METHODS", "CT_METHODS", "LEARNED", "DEFAULTS"]

MRI_METHODS = ("zero-filled", "sense", "cs-wavelet", "cs-tv", "bart-pics", "dps", "fast")
CT_METHODS = ("fbp", "tv", "dps", "fast")
LEARNED = ("dps", "fast")

# Defaults per method, chosen by the sweeps in benchmarks/ (see README, "Choosing the defaults").
DEFAULTS = {
    "dps": {"steps": 1000, "zeta": {"mri": 3.0, "ct": 10.0}},
    # CT's normal operator is far worse conditioned than SENSE's: 5 CG steps leave high-frequency range-space
    # error that the prior fills with invented structure; 20 chosen on ct-60's tuning split (5/10/20/40:
    # 33.47/35.08/35.28/35.28 dB, benchmarks/results/tuning_cpu_2026-12-04). MRI: 20 amplified noise at 8x.
    "fast": {"steps": 50, "cg_iters": {"mri": 5, "ct": 20}, "eta": 0.85},
    "sense": {"iters": 30},
    "cs-wavelet": {"lam": 0.005, "iters": 100},
    "cs-tv": {"lam": 0.002, "iters": 100},
    "bart-pics": {"lam": 0.005, "iters": 100},  # optional: needs the `bart` binary (l1-wavelet pics)
    # CT TV weight in units of mu_water; 1.0 by benchmarks/sweeps/ct_tv_lam_2026-11-27.txt (0.01 barely regularized).
    "tv": {"lam": 1.0, "iters": 100},
}


@dataclass
class ReconConfig:
    """One reconstruction's settings.

    Attributes:
        method: one of :data:`MRI_METHODS` or :data:`CT_METHODS`.
        prior: prior name or bundle folder (default: the shipped prior of the data's modality).
        steps, zeta, cg_iters, eta: sampler settings (``None``: the method's default).
        lam, iters: classical-method settings; MRI ``lam`` is relative to ``max |A^H y|``, CT TV ``lam``
            is in units of mu_water (the TV weight is ``lam * mu_water``).
        samples: posterior samples per slice (K); the std map needs K > 1.
        seed: sampler seed.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: rows (slice x sample) per network batch.
        autocast: bf16 autocast for the network on GPU.
        mask, accel, center_fraction, mask_seed: retrospective undersampling of fully sampled k-space.
        slices: ``a:b`` slice range.
        noise_std: measurement noise (k-space std per sample); ``None``: from the file or estimated.
        progress: show progress bars.
        support: ``"auto"`` restricts learned reconstructions to where the measurement sees the image
            (MRI: the coil maps' support, docs/robustness.md); ``"none"`` leaves the whole image free.
    """

    method: str
    prior: Optional[str] = None
    steps: Optional[int] = None
    zeta: Optional[float] = None
    cg_iters: Optional[int] = None
    eta: Optional[float] = None
    lam: Optional[float] = None
    iters: Optional[int] = None
    samples: int = 1
    seed: int = 0
    device: str = "auto"
    batch_size: Optional[int] = None
    autocast: bool = False
    mask: Optional[str] = None
    accel: int = 4
    center_fraction: float = 0.08
    mask_seed: Optional[int] = None
    slices: Optional[str] = None
    noise_std: Optional[float] = None
    progress: bool = True
    support: str = "auto"

    def method_params(self, modality: Optional[str] = None) -> dict:
        """The method's effective parameters (defaults filled in; some defaults depend on the modality)."""
        d = {k: (v.get(modality, next(iter(v.values()))) if isinstance(v, dict) else v)
             for k, v in DEFAULTS.get(self.method, {}).items()}
        for k in ("steps", "zeta", "cg_iters", "eta", "lam", "iters"):
            v = getattr(self, k)
            if v is not None and k in d:
                d[k] = v
        return d

    def to_dict(self) -> dict:
        return asdict(self)
