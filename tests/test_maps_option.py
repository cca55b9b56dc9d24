"""`simulate mri` stores the true coil maps; `recon --maps auto|espirit|true` chooses which maps a run uses."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from medrecon.cli import main as cli_main

SAMPLE = Path(__file__).resolve().parents[1] / "medrecon" / "data" / "mri_t1_vsseg001_2slices.nii.gz"


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("maps")
    out = d / "sim.h5"
    assert cli_main(["simulate", "mri", "--image", str(SAMPLE), "--mask", "random", "--accel", "4",
                     "--center-fraction", "0.16", "--coils", "4", "--noise-std", "0.001", "--out", str(out)]) == 0
    return out


def _run(sim: Path, maps: str, tmp: Path) -> tuple[np.ndarray, dict]:
    out = tmp / f"sense_{maps}.h5"
    assert cli_main(["recon", str(sim), "--method", "sense", "--maps", maps, "--quiet", "--out", str(out)]) == 0
    with h5py.File(out) as f:
        img = f["reconstruction"][()]
    return img, json.loads(Path(str(out) + ".run.json").read_text())


def test_simulate_stores_the_true_maps(sim):
    from operators import birdcage_maps

    with h5py.File(sim) as f:
        maps = f["true_maps"][()]
        h, w = f["kspace"].shape[-2:]
    assert maps.dtype == np.complex64 and maps.shape == (4, h, w)
    np.testing.assert_allclose(maps, birdcage_maps(4, (h, w)).numpy(), atol=1e-6)


def test_maps_choice_is_applied_and_recorded(sim, tmp_path):
    auto, rec_auto = _run(sim, "auto", tmp_path)
    esp, rec_esp = _run(sim, "espirit", tmp_path)
    true, rec_true = _run(sim, "true", tmp_path)
    assert np.array_equal(auto, esp)  # a simulated file carries no precomputed maps: auto means ESPIRiT
    assert rec_auto["params"]["coil_maps"].startswith("ESPIRiT")
    assert rec_true["params"]["coil_maps"].startswith("true")
    assert not np.allclose(true, esp)
    # the true maps fit the simulation exactly: closer to the target than the estimated ones
    assert rec_true["metrics"]["psnr"] > rec_esp["metrics"]["psnr"]


def test_maps_true_without_true_maps_is_one_line_error(sim, tmp_path, capsys):
    plain = tmp_path / "plain.h5"
    with h5py.File(sim) as f, h5py.File(plain, "w") as g:
        for k in f:
            if k != "true_maps":
                f.copy(k, g)
        g.attrs.update(dict(f.attrs))
    code = cli_main(["recon", str(plain), "--method", "sense", "--maps", "true", "--out", str(tmp_path / "x.h5")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--maps true needs the simulation's coil maps" in err[0]
    assert not (tmp_path / "x.h5").exists()
