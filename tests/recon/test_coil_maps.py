"""The reconstruction path's one ESPIRiT rule (medrecon.recon.problems.coil_maps_for)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medrecon.errors import InputError
from medrecon.recon.problems import (ESPIRIT_CROP, ESPIRIT_THRESHOLD, calib_block, calib_size, coil_maps_for,
                                     espirit_kernel)
from medrecon.acquisition.mri import simulate_kspace
from operators import cartesian_mask, espirit_maps
from operators.coils import coil_support

SAMPLE = Path(__file__).resolve().parents[2] / "medrecon" / "data" / "mri_t1_vsseg001_2slices.nii.gz"


def test_kernel_leaves_nine_positions_across_the_block():
    assert espirit_kernel((48, 10)) == 3  # fastMRI 8x at 256: 10 central lines
    assert espirit_kernel((48, 12)) == 4  # the mri-4x/mri-8x suites at 160 columns
    assert espirit_kernel((48, 13)) == 5
    assert espirit_kernel((48, 14)) == 6 and espirit_kernel((48, 20)) == 6 and espirit_kernel((24, 24)) == 6
    assert espirit_kernel((48, 6)) == 3  # never below 3


def test_calibration_blocks():
    cols = cartesian_mask("equispaced_fraction", 256, 0.04, 8, seed=0)
    assert calib_size(cols) == (48, 10)
    m2 = torch.zeros(64, 64, dtype=torch.bool)
    m2[20:44, 22:42] = True
    assert calib_block(m2) == (24, 20)
    m2[:] = False
    m2[30:34, 30:34] = True
    with pytest.raises(InputError):
        calib_block(m2)


def test_2d_masks_use_their_own_block():
    """A 2-D pattern calibrates on its fully sampled centre (it was once read as a column mask)."""
    torch.manual_seed(0)
    img = torch.rand(1, 48, 48) + 0.5
    sim = simulate_kspace(img, 4, "equispaced", 1, 0.5, seed=0)
    m2 = torch.zeros(48, 48, dtype=torch.bool)
    m2[12:36, 12:36] = True
    m2[::2] = True
    k = sim["kspace"] * m2
    ours = coil_maps_for(k, m2)
    direct = espirit_maps(k, calib_width=(24, 24), kernel_width=6, threshold=ESPIRIT_THRESHOLD, crop=ESPIRIT_CROP)
    assert torch.allclose(ours, direct)


def test_narrow_calibration_keeps_the_whole_head():
    """8x with 10 central lines of a real brain slice: today's kernel leaves no hole in the object.

    The rule before 2026-12-05 (kernel 5, half the block) zeroed the maps over part of the head, where
    no reconstruction can put signal; this test fails on it.
    """
    vol = np.asarray(nib.load(SAMPLE).dataobj, dtype=np.float32)
    sl = torch.from_numpy(vol[..., 0].T.copy())
    sl = torch.nn.functional.interpolate(sl[None, None], size=(256, 256), mode="bilinear", antialias=True)[0]
    sl = sl / torch.quantile(sl, 0.99)
    sim = simulate_kspace(sl, 8, "random", 8, 0.04, seed=0, noise_std=0.002)
    cols = sim["mask"] if sim["mask"].dim() == 1 else sim["mask"].any(0)
    obj = sim["target"][0] > 0.05 * sim["target"][0].max()
    lost_now = float((obj & ~coil_support(coil_maps_for(sim["kspace"], cols))[0]).float().sum() / obj.sum())
    old = espirit_maps(sim["kspace"], calib_width=calib_size(cols), kernel_width=5, threshold=ESPIRIT_THRESHOLD,
                       crop=ESPIRIT_CROP)
    lost_old = float((obj & ~coil_support(old)[0]).float().sum() / obj.sum())
    assert lost_now < 1e-3 and lost_old > 2 * lost_now + 5e-4, (lost_now, lost_old)
