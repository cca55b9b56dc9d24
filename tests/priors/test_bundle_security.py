"""Issue 23, defect 5 (and the bundle part of defect 10): weights are read once, metadata is bounded.

A crafted bundle may carry the correct sha256 of its own weights (the sha256 covers the weights only),
so every number in its metadata must be range-checked before anything is built, and the bytes that
pass the sha256 check must be the bytes that are loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from medrecon.errors import PriorError
from medrecon.priors import DiffusionPrior, load_bundle, read_metadata, save_bundle
from medrecon.priors import prior as prior_module
from medrecon.priors.bundle import METADATA, WEIGHTS, sha256_file
from medrecon.priors.registry import SHIPPED_DIR

TINY = {"channels": [16, 32, 32, 32], "norm_num_groups": 8, "num_head_channels": 32}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs with one torch thread (see tests/conftest.py)."""


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """A tiny MRI and a tiny CT bundle (fp32 weights, none of them zero), saved once for the module."""
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for modality in ("mri", "ct"):
        torch.manual_seed(0)
        prior = DiffusionPrior(modality, TINY, name=f"tiny-{modality}")
        with torch.no_grad():  # no weight exactly zero, so "all zero" can only mean the swapped file
            for p in prior.net.parameters():
                p.add_(torch.rand_like(p) * 1e-3 + 1e-3)
        out[modality] = save_bundle(prior, root / f"tiny-{modality}")
    return out


def _copy(saved: dict[str, Path], modality: str, dst: Path) -> Path:
    """A private copy of a saved bundle that a test may edit."""
    return Path(shutil.copytree(saved[modality], dst))


def _edit(bundle: Path, section: str | None, **changes) -> None:
    """Change metadata fields (of ``section``, or top-level); the weights and their sha256 stay valid."""
    meta = json.loads((bundle / METADATA).read_text())
    target = meta if section is None else meta.setdefault(section, {})
    target.update(changes)
    (bundle / METADATA).write_text(json.dumps(meta))  # NaN/Infinity are written as JSON's NaN/Infinity


@pytest.fixture
def nothing_built(monkeypatch) -> list[str]:
    """Record (and refuse) any attempt to build a network or a noise schedule during the test.

    Returns the list of attempts; a bounded loader refuses the bundle before either is built, so it
    stays empty. The stand-ins raise, so an unbounded loader never gets to allocate.
    """
    calls: list[str] = []

    def no_network(config, in_channels):
        calls.append("network")
        raise AssertionError("a network was built from unchecked metadata")

    def no_scheduler(schedule):
        calls.append("scheduler")
        raise AssertionError("a noise schedule was built from unchecked metadata")

    monkeypatch.setattr(prior_module, "build_network", no_network)
    monkeypatch.setattr(prior_module, "make_scheduler", no_scheduler)
    return calls


def _refused_in_one_line(bundle: Path, field: str) -> str:
    with pytest.raises(PriorError) as info:
        load_bundle(bundle)
    message = str(info.value)
    assert "\n" not in message and field in message, message
    return message


# ----------------------------------------------------------------------------- time of check, time of use
def test_loaded_weights_are_the_hashed_bytes_even_if_the_file_is_swapped_after_the_check(saved, tmp_path,
                                                                                        monkeypatch):
    """Right after the sha256 of the genuine weights is computed, the file on disk is atomically replaced
    by valid all-zero weights of the same names and shapes. The loader must load the genuine weights
    (the bytes it hashed), never the swapped ones; a loader that opens the file again gets zeros."""
    bundle = _copy(saved, "ct", tmp_path / "b")
    wpath = bundle / WEIGHTS
    genuine = load_file(str(wpath))
    genuine_digest = sha256_file(wpath)
    zeros = tmp_path / "zeros.safetensors"
    save_file({k: torch.zeros_like(v) for k, v in genuine.items()}, str(zeros), metadata={"format": "pt"})
    swapped: list[bool] = []
    real_sha256 = hashlib.sha256

    class SwapAfterHash:
        """hashlib.sha256 as usual, except that handing out the genuine digest swaps the file on disk."""

        def __init__(self, data=b"", **kwargs):
            self._h = real_sha256(data, **kwargs)

        def update(self, data):
            self._h.update(data)

        def digest(self):
            return self._h.digest()

        def hexdigest(self):
            out = self._h.hexdigest()
            if out == genuine_digest and not swapped:
                os.replace(zeros, wpath)
                swapped.append(True)
            return out

    monkeypatch.setattr(hashlib, "sha256", SwapAfterHash)
    try:
        prior = load_bundle(bundle)
    except PriorError:
        prior = None  # refusing the swapped bundle is also safe
    monkeypatch.undo()
    assert swapped, "the loader never hashed the genuine weights"
    assert all(not v.any() for v in load_file(str(wpath)).values())  # the swap really happened on disk
    if prior is not None:
        sd = prior.net.state_dict()
        assert sd.keys() == genuine.keys()
        for k, v in genuine.items():
            assert torch.equal(sd[k], v.float()), f"{k} was loaded from the swapped file, not the hashed bytes"


def test_weights_over_the_memory_cap_are_refused_before_they_are_read(saved, tmp_path, monkeypatch):
    bundle = _copy(saved, "ct", tmp_path / "b")
    monkeypatch.setenv("MEDRECON_MAX_GB", str(1000 / 2**30))  # 1000 bytes
    with pytest.raises(PriorError, match="MEDRECON_MAX_GB"):
        load_bundle(bundle)


def test_a_header_length_beyond_the_file_is_refused(saved, tmp_path):
    bundle = _copy(saved, "ct", tmp_path / "b")
    wpath = bundle / WEIGHTS
    raw = bytearray(wpath.read_bytes())
    raw[:8] = (len(raw) * 4).to_bytes(8, "little")
    wpath.write_bytes(bytes(raw))
    _edit(bundle, "weights", sha256=sha256_file(wpath))
    with pytest.raises(PriorError, match="not a valid safetensors file"):
        load_bundle(bundle)


# ----------------------------------------------------------------------------- resource bombs in metadata
def test_huge_num_train_timesteps_is_refused_before_anything_is_built(saved, tmp_path, nothing_built):
    """3e8 timesteps with a correct weights sha256 once allocated 7.6 GB before failing with IndexError."""
    bundle = _copy(saved, "mri", tmp_path / "b")
    _edit(bundle, "schedule", num_train_timesteps=300_000_000)
    message = _refused_in_one_line(bundle, "num_train_timesteps")
    assert "1..100000" in message
    assert nothing_built == []


def test_huge_num_res_blocks_is_refused_before_anything_is_built(saved, tmp_path, nothing_built):
    """20000 residual blocks per level once kept the loader building for minutes."""
    bundle = _copy(saved, "mri", tmp_path / "b")
    _edit(bundle, "network", num_res_blocks=20000)
    message = _refused_in_one_line(bundle, "num_res_blocks")
    assert "1..8" in message
    assert nothing_built == []


@pytest.mark.parametrize("modality,field", [("mri", "percentile"), ("ct", "low"), ("ct", "high")])
def test_a_nan_normalization_value_is_refused(saved, tmp_path, modality, field):
    """Defect 10: a NaN normalization percentile (or HU window edge) used to load, and NaN'd every image."""
    bundle = _copy(saved, modality, tmp_path / "b")
    _edit(bundle, "normalization", **{field: math.nan})
    assert math.isnan(read_metadata(bundle)["normalization"][field])  # JSON's NaN really reached the metadata
    _refused_in_one_line(bundle, f"normalization.{field}")


BAD_FIELDS = [
    ("network", "channels", [16] * 9),
    ("network", "channels", [16, 32, 32, 4096]),
    ("network", "channels", "16,32"),
    ("network", "num_res_blocks", [1, 1, 1, 9]),
    ("network", "num_res_blocks", 0),
    ("network", "num_res_blocks", True),
    ("network", "attention_levels", ["yes", False, False, False]),
    ("network", "spatial_dims", 3),
    ("network", "norm_num_groups", 10**6),
    ("network", "num_head_channels", 10**9),
    ("schedule", "num_train_timesteps", 1000.5),
    ("schedule", "num_train_timesteps", "1000"),
    ("schedule", "num_train_timesteps", 0),
    ("schedule", "beta_start", math.nan),
    ("schedule", "beta_end", 1.5),
    ("schedule", "beta_end", math.inf),
    ("schedule", "schedule", "x" * 10_000),
    ("normalization", "percentile", math.inf),
    ("normalization", "percentile", 0),
    ("normalization", "percentile", 250.0),
    ("normalization", "kind", "exec"),
]


@pytest.mark.parametrize("section,field,value", BAD_FIELDS, ids=[f"{s}.{f}={str(v)[:12]}" for s, f, v in BAD_FIELDS])
def test_out_of_range_metadata_is_refused_in_one_short_line(saved, tmp_path, nothing_built, section, field, value):
    bundle = _copy(saved, "mri", tmp_path / "b")
    _edit(bundle, section, **{field: value})
    message = _refused_in_one_line(bundle, f"{section}.{field}")
    assert len(message) < 300  # a short field value, never a dump of the file
    assert nothing_built == []


def test_a_hu_window_with_low_above_high_is_refused(saved, tmp_path, nothing_built):
    bundle = _copy(saved, "ct", tmp_path / "b")
    _edit(bundle, "normalization", low=2000.0, high=-1000.0)
    _refused_in_one_line(bundle, "normalization.high")
    assert nothing_built == []


@pytest.mark.parametrize("name", ["mri-brain", "ct-body"])
def test_shipped_metadata_is_within_bounds(name):
    from medrecon.priors.bundle import _check_metadata_bounds

    bundle = SHIPPED_DIR / name
    _check_metadata_bounds(read_metadata(bundle), bundle)  # raises if a shipped prior would be refused


def test_in_range_values_still_load(saved, tmp_path):
    bundle = _copy(saved, "mri", tmp_path / "b")
    _edit(bundle, "schedule", num_train_timesteps=100_000, beta_start=1e-4, beta_end=0.02)
    _edit(bundle, "normalization", percentile=100)
    _edit(bundle, "network", num_res_blocks=[1, 1, 1, 1])
    prior = load_bundle(bundle)
    assert prior.num_timesteps == 100_000 and prior.rule.percentile == 100
