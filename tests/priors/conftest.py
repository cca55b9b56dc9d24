"""Fixtures shared by the prior tests."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.priors.data import SliceVolume


@pytest.fixture
def disc_volume():
    """A factory of tiny MRI training volumes: ``n`` slices of a bright disc (brightness varied per slice) on a
    ``size`` x ``size`` grid at 1.2 mm, with a test provenance record."""
    def make(name: str, n: int = 4, size: int = 40, seed: int = 0) -> SliceVolume:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:size, :size] / size - 0.5
        disc = (xx ** 2 + yy ** 2 < 0.16).astype(np.float32)
        slices = np.stack([disc * (1 + 0.2 * rng.random()) for _ in range(n)]).astype(np.float32)
        return SliceVolume(name, slices, 1.2, [{"file": name, "sha256": "0" * 64, "licence": "test"}])
    return make
