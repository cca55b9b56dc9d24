"""``medrecon benchmark --suite smoke --device cpu`` end to end: the issue's CI check (~3 min on 2 CPU cores)."""

from __future__ import annotations

import json
import math

import pytest

from medrecon.cli import main as cli_main

MRI = {"zero-filled", "sense", "cs-wavelet", "cs-tv", "dps", "fast"}
CT = {"fbp", "cs-tv", "dps", "fast"}
FIELDS = ("dataset", "modality", "method", "psnr", "ssim", "nmse", "seconds_per_slice", "nfe", "peak_mem_mb")


@pytest.mark.slow
def test_smoke_suite_on_cpu_writes_every_method_report_and_figures(tmp_path, capfd):
    out = tmp_path / "smoke"
    assert cli_main(["benchmark", "--suite", "smoke", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    stdout, _ = capfd.readouterr()
    res = json.loads((out / "results.json").read_text())
    assert res["suite"] == "smoke" and res["device"] == "cpu"
    got = {(r["modality"], r["method"]) for r in res["rows"]}
    assert got == {("mri", m) for m in MRI} | {("ct", m) for m in CT}
    for r in res["rows"]:
        assert set(FIELDS) <= set(r), r["method"]
        assert "error" not in r, r.get("error")
        for k in ("psnr", "ssim", "nmse", "seconds_per_slice", "peak_mem_mb"):
            assert isinstance(r[k], float) and math.isfinite(r[k]), (r["method"], k)
        assert isinstance(r["nfe"], int) and (r["nfe"] > 0) == (r["method"] in ("dps", "fast"))
        assert math.isfinite(r["per_slice"]["psnr"])
    report = (out / "report.md").read_text()
    assert "medrecon benchmark --suite smoke --device cpu" in report
    assert "fastMRI convention (volume max)" in report and "per-slice convention" in report
    assert "| dps |" in report and "| fbp |" in report
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) == 2 and all(p.stat().st_size > 10_000 for p in pngs)
    assert "[10/10]" in stdout
