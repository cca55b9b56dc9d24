"""Helpers of the scale-out tests: tiny studies, the reconstruction settings, output comparison.

Every executor must write exactly what the local executor writes, so the local run of the same folder
with the same settings is computed once per session (see conftest) and compared bit for bit. The method is the fast
posterior sampler with a random-weight tiny prior and a retrospective random mask: both the sampler
noise and the mask depend on the study's seed, so a seeding mistake shows up as different pixels.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import torch

from medrecon.recon.config import ReconConfig

TINY_NET = {"channels": [8, 8, 8, 8], "norm_num_groups": 4, "num_head_channels": 8}
GOOD = ["s0.h5", "s1.h5", "s2.h5", "s3.h5"]
BROKEN = "broken.h5"
REPO = Path(__file__).resolve().parents[2]
# Subprocesses (torchrun, submitit tasks) must import this checkout, with one OpenMP thread each.
SUB_ENV = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))


def write_study(path: Path, seed: int, size: int = 32, coils: int = 4) -> Path:
    """A fully sampled 1-slice multi-coil k-space file (fastMRI layout) of a random ellipse phantom."""
    from medrecon.io.fastmri import write_fastmri_kspace
    from operators import birdcage_maps

    g = np.random.default_rng(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    a, b = 0.5 + 0.3 * g.random(), 0.5 + 0.3 * g.random()
    img = ((xx / a) ** 2 + (yy / b) ** 2 < 1).float() + 0.5 * (((xx - 0.2) ** 2 + yy ** 2) < 0.04).float()
    coil_imgs = birdcage_maps(coils, (size, size)) * img
    k = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(coil_imgs, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
    return write_fastmri_kspace(path, k[None].numpy().astype(np.complex64), recon_size=(size, size))


def recon_config(prior: Path, seed: int = 7) -> ReconConfig:
    return ReconConfig(method="fast", prior=str(prior), steps=2, cg_iters=2, mask="random", accel=2,
                       center_fraction=0.5, seed=seed, device="cpu", progress=False)


def recon_args(prior: Path, seed: int = 7) -> list[str]:
    """The CLI flags equal to :func:`recon_config`."""
    return ["--method", "fast", "--prior", str(prior), "--steps", "2", "--cg-iters", "2", "--mask", "random",
            "--accel", "2", "--center-fraction", "0.5", "--seed", str(seed), "--device", "cpu", "--quiet"]


def read_outputs(out_dir: Path) -> dict[str, np.ndarray]:
    """``{output name: reconstruction array}`` of every finished study in ``out_dir``."""
    out = {}
    for p in sorted(out_dir.glob("*.h5")):
        if Path(str(p) + ".run.json").is_file():
            with h5py.File(p, "r") as f:
                out[p.name] = f["reconstruction"][()]
    return out


def assert_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k, x in a.items():
        y = b[k]
        assert x.dtype == y.dtype and x.shape == y.shape, k
        assert np.array_equal(x, y), f"{k} differs: max |diff| {np.abs(x - y).max()}"


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
