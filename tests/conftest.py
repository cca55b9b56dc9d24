"""Shared fixtures and markers: data tests skip without ../shared/data, GPU tests without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


def pytest_collection_modifyitems(config, items):
    skip_data = pytest.mark.skip(reason=f"needs {SHARED_DATA}")
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "data" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(skip_data)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data (tests using it must be marked ``data``)."""
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test: small tensors on a shared 2-core machine avoid OpenMP spin
    contention, and CPU reductions are bit-reproducible only at equal thread counts (the Ray and shard
    executors' tests compare outputs bit for bit)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _privacy_layer_starts_empty():
    """The privacy layer's identifier set is process-wide (medrecon.io.privacy): each test starts without one."""
    from medrecon.io import privacy

    privacy.forget()
    yield
    privacy.forget()
