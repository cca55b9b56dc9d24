"""Volume mode's settings: the measured default z weights and the checks a study must pass.

``--volume`` reconstructs a study's slices as one volume (issue 19): the samplers couple their clean-image
estimates by TV along z at every step (:mod:`medrecon.sampling.zcouple`, :mod:`medrecon.sampling.volume`),
and the TV methods add TV along z to their in-plane TV (3-D TV). The weight means, for a sampler, the TV
threshold per unit of the Tweedie estimate's error std (network units); for ``cs-tv`` / ``tv``, the z weight
relative to the in-plane TV weight. Either is 0 for the old slice-by-slice reconstruction.
"""

from __future__ import annotations

from medrecon import methods as registry
from medrecon.errors import InputError

__all__ = ["Z_RHO", "Z_SOLVE", "Z_WEIGHTS", "check_volume", "z_solve_for", "z_weight_for"]

#: Default z weights by method kind and modality, chosen on the tuning slabs of the volume suites
#: (``bash benchmarks/volume_suites.sh tune``; benchmarks/results/volume_cpu_2026-12-07/ and README "Volumes"):
#: the fast sampler 1.0 on mri-vol-8x (grid 0.25/0.5/1: 23.93/24.04/24.09 dB, the grid's top) and 2.0 on ct-vol-60
#: (0.5/1/2/4: 37.08/37.23/37.30/37.23 dB); TV 1.0 on mri-vol-8x (0.5-8) and 8 on ct-vol-60 (2-32). The other
#: samplers take the fast sampler's weight (not tuned separately).
Z_WEIGHTS = {"learned": {"mri": 1.0, "ct": 2.0}, "tv": {"mri": 1.0, "ct": 8.0}}


#: How the samplers with a CG data step (fast, langevin) couple the slices, and the joint solve's relative penalty
#: (``medrecon.sampling.zcouple``): ``prox`` couples the estimates before the data step, ``admm`` solves TV along
#: z jointly with it. Measured on the tuning slabs (``benchmarks/zjoint_sweep.sh``,
#: benchmarks/results/zjoint_cpu_2026-12-07/): prox 37.30 dB on ct-vol-60 (admm at best 37.21, with +0.002 SSIM at
#: rho_rel 0.03), 24.09 dB on mri-vol-8x (admm at best 23.82, rho_rel 0.03; slice by slice 23.53), so prox is the
#: default; the rho values are admm's best tuning points, used when ``--z-solve admm`` is given without ``--z-rho``.
Z_SOLVE = {"mri": "prox", "ct": "prox"}
Z_RHO = {"mri": 0.03, "ct": 0.03}


def z_solve_for(modality: str) -> tuple[str, float]:
    """The default ``(z_solve, z_rho)`` on ``modality``."""
    return Z_SOLVE[modality], Z_RHO[modality]


def z_weight_for(method: str, modality: str) -> float:
    """The default z weight of ``method`` on ``modality`` (0 for methods without a z term)."""
    spec = registry.get(method)
    if spec.learned:
        return Z_WEIGHTS["learned"][modality]
    return Z_WEIGHTS["tv"][modality] if spec.z_term else 0.0


def check_volume(n_slices: int) -> None:
    """A volume needs at least two slices (one-line :class:`InputError`)."""
    if n_slices < 2:
        raise InputError(f"volume mode needs at least 2 contiguous slices; this study has {n_slices} "
                         "(drop --volume, or widen --slices)")
