"""Small MRI and CT inverse problems on the shipped priors, for tests of the samplers' behaviour.

A ``size x size`` disc with an off-centre insert: MRI with 4 birdcage coils, an equispaced 4x mask and k-space
noise 0.01; CT with 12 parallel views, noiseless.
"""

from __future__ import annotations

import torch

__all__ = ["small_problem"]


def _image(size: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    disc = ((xx ** 2 + yy ** 2) < 0.6).float()
    return (disc + 0.5 * ((xx - 0.2) ** 2 + yy ** 2 < 0.05).float())[None]


def small_problem(modality: str, size: int = 32):
    """``(prior, problem)``: the shipped prior of ``modality`` on the CPU and a one-slice problem."""
    from medrecon.acquisition.mri import simulate_kspace
    from medrecon.priors import load_prior
    from medrecon.recon.problems import ct_problem, mri_problem
    from operators import ParallelBeamCT, birdcage_maps, hu_to_mu

    prior = load_prior(None, modality, torch.device("cpu"))
    if modality == "mri":
        maps = birdcage_maps(4, (size, size))
        sim = simulate_kspace(_image(size), 4, "equispaced", 4, 0.25, seed=0, noise_std=0.01, maps=maps)
        problem, _ = mri_problem(prior, sim["kspace"], sim["mask"], maps=maps[None], noise_var=torch.full((1,), 1e-4))
    else:
        A = ParallelBeamCT((size, size), 12)
        problem = ct_problem(prior, A, A(hu_to_mu((_image(size) - 1.0) * 1000.0)))
    return prior, problem
