"""The demo end to end on the CPU (the main job of a fresh install)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_on_cpu_and_writes_everything(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "medrecon", "demo", "--out", str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    methods = {(r["modality"], r["method"]) for r in metrics["rows"]}
    assert {("mri", m) for m in ("zero-filled", "sense", "cs-wavelet", "dps", "fast")} <= methods
    assert {("ct", m) for m in ("fbp", "tv", "dps", "fast")} <= methods
    for m in ("mri", "ct"):
        assert (out / f"{m}_figure.png").stat().st_size > 10_000
        assert (out / f"{m}_fast.nii.gz").is_file() and (out / f"{m}_fast_std.nii.gz").is_file()
    rows = {(r["modality"], r["method"]): r for r in metrics["rows"]}
    # The diffusion samplers must at least beat the crude baselines on the shipped samples.
    assert rows[("mri", "fast")]["ssim"] > rows[("mri", "zero-filled")]["ssim"]
    assert rows[("ct", "fast")]["psnr"] > rows[("ct", "fbp")]["psnr"] + 1.0
    assert "| mri | fast |" in proc.stdout
