"""Speed work must not change what the samplers compute (issue 22).

Every diffusion sampler runs a few seeded steps with the shipped priors on small MRI and CT problems, and
its output is compared with outputs pinned in ``data/pinned_outputs.npz``, which were written before the
speed work (commit 42f107b, one torch thread); the CT outputs were pinned again when ct-body 0.2.0 replaced 0.1.0,
the MRI outputs when mri-brain 0.2.0 replaced 0.1.0 (new weights, same code). The tolerance is floating-point reordering (channels_last
convolutions, fused kernels), not a change of algorithm: 1e-4 of the reference's largest magnitude.

A deliberate change of a sampler's algorithm re-pins with ``MEDRECON_REPIN=1 pytest
tests/sampling/test_pinned_outputs.py`` and says why in its commit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from medrecon.sampling import posterior_sample
from medrecon.testing.problems import small_problem

PINNED = Path(__file__).parent / "data" / "pinned_outputs.npz"
SIZE = 32
# key -> (method, settings). "fast" and "langevin" pin the samplers without in-plane TV (as pinned before TV existed),
# "fast_tv" and "langevin_tv" with it (added 2026-12-08, when TV became their default: 0.3 and 0.1).
SETTINGS = {"dps": ("dps", {"steps": 3, "zeta": 1.0}), "fast": ("fast", {"steps": 3, "cg_iters": 3, "eta": 0.85, "tv": 0.0}),
            "fast_tv": ("fast", {"steps": 3, "cg_iters": 3, "eta": 0.85, "tv": 0.3}),
            "langevin": ("langevin", {"steps": 3, "cg_iters": 3, "tv": 0.0}),
            "langevin_tv": ("langevin", {"steps": 3, "cg_iters": 3, "tv": 0.1}),
            "daps": ("daps", {"steps": 3, "ode_steps": 1, "langevin": 3})}
REL_TOL = 1e-4


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Pinned at one torch thread: CPU reductions are bit-reproducible only at equal thread counts."""


def _problem(modality: str):
    return small_problem(modality, SIZE)


def _outputs() -> dict[str, np.ndarray]:
    out = {}
    for modality in ("mri", "ct"):
        prior, problem = _problem(modality)
        for key, (method, settings) in SETTINGS.items():
            res = posterior_sample(method, prior, problem, samples=2, seed=3, **settings)
            mean = res.mean.detach().cpu().numpy()  # complex for MRI: both parts are pinned
            out[f"{modality}_{key}"] = mean.astype(np.complex64 if np.iscomplexobj(mean) else np.float32)
    return out


@pytest.fixture(scope="module")
def outputs() -> dict[str, np.ndarray]:
    torch.set_num_threads(1)
    return _outputs()


def test_pinned_file_present_or_repin(outputs):
    if os.environ.get("MEDRECON_REPIN") == "1":
        PINNED.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(PINNED, **outputs)
    assert PINNED.exists(), "pinned outputs missing: MEDRECON_REPIN=1 pytest tests/sampling/test_pinned_outputs.py"


@pytest.mark.parametrize("key", [f"{m}_{s}" for m in ("mri", "ct") for s in SETTINGS])
def test_sampler_output_unchanged(outputs, key):
    ref = np.load(PINNED)[key]
    got = outputs[key]
    assert got.shape == ref.shape
    scale = float(np.abs(ref).max())
    err = float(np.abs(got - ref).max())
    assert err <= REL_TOL * scale, f"{key}: max |change| {err:.3g} > {REL_TOL:g} x max |reference| {scale:.3g}"
