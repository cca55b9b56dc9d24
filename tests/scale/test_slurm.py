"""The Slurm executor through submitit, run on submitit's local backend (subprocesses, no Slurm needed).

The array tasks are separate Python processes, each running one shard of the study list and recording
its studies in the shared manifest, exactly as on compute nodes.
"""

from __future__ import annotations

import json

import pytest
from scalekit import GOOD, SUB_ENV, assert_identical, read_outputs, recon_config

from medrecon.scale import ScaleOptions, run_studies

pytest.importorskip("submitit")


@pytest.mark.slow
def test_slurm_array_matches_local(studies, tiny_prior, reference, tmp_path, monkeypatch):
    for k in ("PYTHONPATH", "OMP_NUM_THREADS"):  # the tasks import this checkout, one thread each
        monkeypatch.setenv(k, SUB_ENV[k])
    out = tmp_path / "out"
    opts = ScaleOptions(executor="slurm", workers=2, slurm={"cluster": "local", "timeout_min": 10})
    summary = run_studies(str(studies), out, recon_config(tiny_prior), options=opts)
    assert (summary.reconstructed, summary.failed, summary.pending) == (4, 1, 0)
    assert_identical(read_outputs(out), reference)
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"] == {"done": 4, "failed": 1, "pending": 0}
    assert len({m["studies"][n]["worker"]["pid"] for n in GOOD}) == 2  # two array tasks did the work
    assert list((out / ".slurm").iterdir())  # submitit's logs and pickles live beside the outputs
