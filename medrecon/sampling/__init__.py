"""Posterior samplers over a diffusion prior and a linear forward operator.

* :func:`~medrecon.sampling.dps.dps_chain`: diffusion posterior sampling (Chung et al. 2023).
* :func:`~medrecon.sampling.fast.fast_chain`: DDIM + CG data consistency (DDS, Chung et al. 2024).
* :func:`~medrecon.sampling.langevin.langevin_chain`: preconditioned posterior Langevin (pULA, Blumenthal et al.
  2025) over the diffused prior, levels spaced geometrically in sigma.
* :func:`~medrecon.sampling.daps.daps_chain`: decoupled annealing posterior sampling (Zhang et al., CVPR 2025).
* :func:`posterior_sample`: K samples per slice, batched and seeded, with mean and std maps.

Parts: :mod:`.protocols` (what a sampler needs from a prior, what a chain looks like), :mod:`.loop` (the
starting noise and strided schedule every chain shares), :mod:`.problem` (the inverse problem), :mod:`.cg`,
:mod:`.consistency` (the optional final exact data consistency, and the data misfit every run reports).
"""

from .common import SampleResult
from .posterior import SAMPLERS, posterior_sample
from .problem import InverseProblem
from .protocols import Chain, Denoiser

__all__ = ["posterior_sample", "SampleResult", "InverseProblem", "SAMPLERS", "Chain", "Denoiser"]
