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
