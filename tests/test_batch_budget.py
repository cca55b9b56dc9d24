"""All rows of a study in one network batch, up to the memory budget (issue 22)."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.app.memory import check_working_memory, estimate_working_bytes, fit_batch_size
from medrecon.errors import InputError
from medrecon.io.measurement import LoadedInput
from medrecon.recon.config import ReconConfig

GIB = 2 ** 30


def _cap_between(monkeypatch, inp, cfg, rows: int) -> None:
    """Set MEDRECON_MAX_GB halfway between the estimates of ``rows`` and ``rows + 1`` rows per batch."""
    from dataclasses import replace

    lo = estimate_working_bytes(inp, replace(cfg, batch_size=rows), "cpu")
    hi = estimate_working_bytes(inp, replace(cfg, batch_size=rows + 1), "cpu")
    assert hi > lo
    monkeypatch.setenv("MEDRECON_MAX_GB", repr((lo + hi) / 2 / GIB))


def test_fit_batch_size_known_answers(monkeypatch):
    inp = LoadedInput("mri", np.ones((8, 8, 320, 320), np.complex64), None, (320, 320))
    cfg = ReconConfig(method="fast", device="cpu", samples=2, progress=False)
    assert fit_batch_size(inp, cfg, "cpu") is None  # 16 rows fit the default 16 GiB
    for rows in (1, 4, 11):
        _cap_between(monkeypatch, inp, cfg, rows)
        assert fit_batch_size(inp, cfg, "cpu") == rows
        from dataclasses import replace

        check_working_memory(inp, replace(cfg, batch_size=rows), None, "cpu")  # fits: no error
        with pytest.raises(InputError, match="MEDRECON_MAX_GB"):
            check_working_memory(inp, cfg, None, "cpu")  # all 16 rows at once would not
    # Not this rule's business: a batch the user chose, a method without a network.
    assert fit_batch_size(inp, ReconConfig(method="fast", device="cpu", batch_size=16), "cpu") is None
    assert fit_batch_size(inp, ReconConfig(method="sense", device="cpu"), "cpu") is None
    monkeypatch.setenv("MEDRECON_MAX_GB", "0.01")
    assert fit_batch_size(inp, cfg, "cpu") == 1  # not even one row: check_working_memory then refuses


def test_reconstruct_batches_to_the_budget_with_the_same_answer(monkeypatch, capsys, one_thread):
    """Over the budget, reconstruct() picks the batch and says so; the result is that of the same --batch-size."""
    from dataclasses import replace

    from medrecon.acquisition.mri import simulate_kspace
    from medrecon.app.pipeline import reconstruct
    from operators import birdcage_maps

    import torch

    yy, xx = np.mgrid[-1:1:64j, -1:1:64j]
    img = torch.from_numpy(((xx ** 2 + yy ** 2) < 0.5).astype(np.float32))[None].repeat(2, 1, 1)
    sim = simulate_kspace(img, 4, "equispaced", 4, 0.25, seed=0, noise_std=0.01, maps=birdcage_maps(4, (64, 64)))
    inp = LoadedInput("mri", sim["kspace"].numpy(), sim["mask"].numpy(), (64, 64), noise_std=0.01)
    cfg = ReconConfig(method="fast", device="cpu", samples=2, steps=2, progress=False, seed=5)
    _cap_between(monkeypatch, inp, cfg, 2)
    res = reconstruct(inp, cfg)
    assert "2 of 4 rows (slice x sample) per network batch" in capsys.readouterr().err
    assert res.info["batch_size"] == 2
    monkeypatch.delenv("MEDRECON_MAX_GB")
    same = reconstruct(inp, replace(cfg, batch_size=2))
    np.testing.assert_array_equal(res.image, same.image)
    assert "batch_size" not in same.info  # the user's own choice is in the config, not re-recorded


def test_volume_mode_fits_the_budget_with_slabs(monkeypatch, capsys, one_thread):
    """Issue 19: over the budget, volume mode samples in slabs (every slice of a slab in one batch) instead of
    splitting a slab's batch, says so, and gives the answer of that --slab."""
    from dataclasses import replace

    import torch

    from medrecon.acquisition.mri import simulate_kspace
    from medrecon.app.pipeline import reconstruct
    from operators import birdcage_maps

    yy, xx = np.mgrid[-1:1:48j, -1:1:48j]
    img = torch.from_numpy(np.stack([((xx ** 2 + yy ** 2) < 0.3 + 0.05 * k).astype(np.float32) for k in range(6)]))
    sim = simulate_kspace(img, 4, "equispaced", 4, 0.25, seed=0, noise_std=0.01, maps=birdcage_maps(4, (48, 48)))
    inp = LoadedInput("mri", sim["kspace"].numpy(), sim["mask"].numpy(), (48, 48), noise_std=0.01)
    cfg = ReconConfig(method="fast", device="cpu", steps=2, progress=False, seed=1, volume=True)
    _cap_between(monkeypatch, inp, cfg, 3)
    res = reconstruct(inp, cfg)
    assert "volume mode in slabs of 3 slices" in capsys.readouterr().err
    assert res.image.shape[0] == 6
    monkeypatch.delenv("MEDRECON_MAX_GB")
    same = reconstruct(inp, replace(cfg, slab=3))
    np.testing.assert_array_equal(res.image, same.image)
