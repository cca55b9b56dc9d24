"""The benchmark runner keeps finished work when a run is stopped (a time limit, Ctrl-C)."""

from __future__ import annotations

import json

import pytest

from medrecon.benchmark import BenchmarkConfig, run_benchmark
from medrecon.benchmark.session import Session


def test_results_are_written_after_every_method_and_never_half_written(tmp_path, monkeypatch):
    real = Session.evaluate
    calls = []

    def evaluate(self, cases, method, settings, chunk):
        calls.append(method)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stopped during the second method of the dataset
        return real(self, cases, method, settings, chunk)

    monkeypatch.setattr(Session, "evaluate", evaluate)
    cfg = BenchmarkConfig(suite="smoke", out=tmp_path / "o", methods=["zero-filled", "sense"], datasets=["smoke-mri"],
                          device="cpu", figures=False, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(cfg)
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [r["method"] for r in res["rows"]] == ["zero-filled"] and res["rows"][0]["psnr"] > 10
    assert "smoke-mri" in res["datasets"] and (tmp_path / "o" / "report.md").is_file()
    assert not list((tmp_path / "o").glob(".*partial"))


def test_a_radial_dataset_runs_through_the_benchmark(tmp_path, suite_json, write_manifest):
    """A non-Cartesian dataset (issue 20): the smoke suite's MRI slice as 24 golden-angle spokes; gridding,
    CG-SENSE and the fast sampler are scored, and the report describes the trajectory."""
    doc = suite_json("smoke")
    ds = doc["datasets"][0]
    ds["name"], ds["image_size"] = "smoke-radial", [64, 64]
    ds["acquisition"] = {"trajectory": "golden-radial", "spokes": 24, "coils": 8, "seed": 0, "noise_std": 0.002}
    ds["methods"] = {"zero-filled": {}, "sense": {"iters": 10}, "fast": {"steps": 3, "cg_iters": 2, "samples": 1}}
    ds["tuning_grid"] = {}
    doc["datasets"] = [ds]
    cfg = BenchmarkConfig(suite=str(write_manifest(doc)), out=tmp_path / "o", device="cpu", figures=False,
                          progress=False)
    run_benchmark(cfg)
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == {"zero-filled", "sense", "fast"}
    assert rows["sense"]["psnr"] > rows["zero-filled"]["psnr"] - 3 and rows["zero-filled"]["psnr"] > 20
    assert "golden-radial trajectory, 24 spokes of 128 samples" in (tmp_path / "o" / "report.md").read_text()


def test_seed_replaces_the_suites_sampler_seed_and_keeps_the_data(tmp_path, suite_json, write_manifest):
    """``--seed`` (issue 16: the seed-to-seed spread of a ledger comparison): another sampler seed changes the fast
    sampler's output but not the data, so the classical rows are identical; the seed is recorded."""
    doc = suite_json("smoke")
    ds = [d for d in doc["datasets"] if d["name"] == "smoke-mri"][0]
    ds["methods"] = {"zero-filled": {}, "fast": {"steps": 3, "cg_iters": 2, "samples": 1}}
    ds["tuning_grid"] = {}
    doc["datasets"] = [ds]
    path = write_manifest(doc)
    res = {}
    for seed in (None, 0, 7):
        out = tmp_path / f"s{seed}"
        run_benchmark(BenchmarkConfig(suite=str(path), out=out, device="cpu", figures=False, progress=False,
                                      seed=seed))
        res[seed] = json.loads((out / "results.json").read_text())
    rows = {k: {r["method"]: r for r in v["rows"]} for k, v in res.items()}
    assert res[None]["sampler_seed"] == doc.get("seed", 0) == 0 and res[7]["sampler_seed"] == 7
    assert rows[None]["fast"]["psnr"] == rows[0]["fast"]["psnr"]  # the suite's seed, explicitly
    assert rows[7]["fast"]["psnr"] != rows[0]["fast"]["psnr"]
    assert rows[7]["zero-filled"]["psnr"] == rows[0]["zero-filled"]["psnr"]
    assert "sampler seed 7" in (tmp_path / "s7" / "report.md").read_text()
