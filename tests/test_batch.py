"""Batch mode: every file reconstructed, finished ones skipped on rerun, broken ones reported."""

import numpy as np
import pytest

from medrecon.app.batch import batch_inputs, run_batch
from medrecon.errors import InputError
from medrecon.io.fastmri import write_fastmri_kspace
from medrecon.recon.config import ReconConfig


def _kspace(seed):
    g = np.random.default_rng(seed)
    return (g.standard_normal((1, 2, 16, 12)) + 1j * g.standard_normal((1, 2, 16, 12))).astype(np.complex64)


def test_batch_reconstructs_skips_and_reports(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        write_fastmri_kspace(src / f"vol{i}.h5", _kspace(i))
    (src / "broken.h5").write_text("not hdf5")
    out = tmp_path / "out"
    cfg = ReconConfig(method="zero-filled", progress=False)
    assert run_batch(str(src), out, cfg) == 1  # one failure -> non-zero exit
    err = capsys.readouterr().err
    assert "broken.h5" in err and err.count("medrecon: error:") == 1
    assert (out / "vol0.h5").is_file() and (out / "vol1.h5.run.json").is_file()
    assert not (out / "broken.h5").exists()
    (src / "broken.h5").unlink()
    assert run_batch(str(src), out, cfg) == 0
    assert "2 already done" in capsys.readouterr().out


def test_empty_batch_is_an_input_error(tmp_path):
    with pytest.raises(InputError):
        batch_inputs(str(tmp_path))


def test_a_batch_undersamples_every_study_with_the_same_mask(tmp_path):
    """One mask seed per batch (--mask-seed, else --seed), while each study keeps its own sampler seed."""
    import json

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        write_fastmri_kspace(src / f"vol{i}.h5", _kspace(i))
    out = tmp_path / "out"
    cfg = ReconConfig(method="zero-filled", progress=False, mask="random", accel=4, center_fraction=0.25, seed=5)
    assert run_batch(str(src), out, cfg) == 0
    recs = [json.loads((out / f"vol{i}.h5.run.json").read_text()) for i in range(3)]
    assert {r["seeds"]["mask"] for r in recs} == {5}
    assert len({r["seeds"]["sampler"] for r in recs}) == 3
