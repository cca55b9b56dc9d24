"""Fixtures of the scale-out tests: a folder of tiny studies, a tiny prior, and the local reference.

Every executor must write exactly what the local executor writes, so the local run of the same folder
with the same settings is computed once per session and compared bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scalekit import BROKEN, GOOD, TINY_NET, read_outputs, recon_config, write_study


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs with one torch thread (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def studies(tmp_path_factory) -> Path:
    """Four good studies and one corrupt file."""
    folder = tmp_path_factory.mktemp("studies")
    for i, name in enumerate(GOOD):
        write_study(folder / name, seed=i)
    (folder / BROKEN).write_bytes(b"this is not an HDF5 file")
    return folder


@pytest.fixture(scope="session")
def tiny_prior(tmp_path_factory) -> Path:
    from medrecon.priors.bundle import save_bundle
    from medrecon.priors.prior import DiffusionPrior

    torch.manual_seed(0)
    prior = DiffusionPrior("mri", TINY_NET, name="tiny-mri")
    return save_bundle(prior, tmp_path_factory.mktemp("prior") / "tiny-mri")


@pytest.fixture(scope="session")
def reference(studies, tiny_prior, tmp_path_factory) -> dict[str, np.ndarray]:
    """The local executor's outputs for ``studies`` (the bar every executor must meet bit for bit)."""
    from medrecon.scale import run_studies

    out = tmp_path_factory.mktemp("reference")
    # Session fixtures set up before the autouse one-thread fixture: pin the threads here too, since
    # CPU results are only bit-identical at equal thread counts (Ray actors run one thread each).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_studies(str(studies), out, recon_config(tiny_prior))
    finally:
        torch.set_num_threads(n)
    assert summary.reconstructed == len(GOOD) and summary.failed == 1
    ref = read_outputs(out)
    assert sorted(ref) == GOOD
    return ref
