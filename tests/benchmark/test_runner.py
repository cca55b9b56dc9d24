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
