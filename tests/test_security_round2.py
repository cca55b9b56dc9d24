"""Regression tests for issue 23 (security and privacy, round two), one per fixed defect; each failed on the
main of 2026-12-05 before its fix. Defects 1, 9 and 10's range checks have their tests beside the code they
touch (tests/io/test_volumes.py, tests/acquisition/, tests/test_methods.py)."""

from __future__ import annotations

import shutil

import h5py
import pytest

from medrecon.cli import main
from medrecon.priors.registry import SHIPPED_DIR, resolve_prior
from medrecon.testing.samples import tiny_fastmri


def test_defect3_a_folder_in_the_working_directory_does_not_replace_a_shipped_prior(tmp_path, monkeypatch):
    fake = tmp_path / "mri-brain"
    shutil.copytree(SHIPPED_DIR / "mri-brain" / "configs", fake / "configs")
    monkeypatch.chdir(tmp_path)
    assert resolve_prior("mri-brain", "mri") == SHIPPED_DIR / "mri-brain"  # a bare name is a name
    assert resolve_prior("./mri-brain", "mri") == fake.relative_to(tmp_path) or \
        resolve_prior("./mri-brain", "mri").resolve() == fake  # a path is a path


def test_defect9_evaluate_without_json_prints_both_conventions(tmp_path, capsys):
    """`medrecon evaluate --target A --recon B` without --json exited 1 with KeyError: 'mean'."""
    (tmp_path / "t").mkdir()
    (tmp_path / "r").mkdir()
    src = tiny_fastmri(tmp_path / "t" / "vol.h5")
    with h5py.File(src, "a") as f:
        if "reconstruction_rss" not in f:
            pytest.skip("the tiny sample has no target")
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(tmp_path / "r" / "vol.h5"),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--target", str(tmp_path / "t"), "--recon", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "1 volume(s)" in out and "fastMRI convention" in out and "per-slice" in out and "PSNR = " in out
