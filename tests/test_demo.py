"""The demo end to end on the CPU (the main job of a fresh install)."""

import json
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_demo_runs_on_cpu_and_writes_everything(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "medrecon", "demo", "--out", str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    methods = {(r["modality"], r["method"]) for r in metrics["rows"]}
    assert {("mri", m) for m in ("zero-filled", "sense", "cs-wavelet", "dps", "fast", "langevin")} <= methods
    assert {("ct", m) for m in ("fbp", "tv", "fast", "langevin")} <= methods
    assert ("ct", "dps") not in methods  # below its 1000 steps DPS invents structure on CT (--full runs it)
    assert metrics["total_seconds"] > 0 and isinstance(metrics["bf16"], bool)
    for m in ("mri", "ct"):
        assert (out / f"{m}_figure.png").stat().st_size > 10_000
        assert (out / f"{m}_fast.nii.gz").is_file() and (out / f"{m}_fast_std.nii.gz").is_file()
    rows = {(r["modality"], r["method"]): r for r in metrics["rows"]}
    # The diffusion samplers must at least beat the crude baselines on the shipped samples.
    assert rows[("mri", "fast")]["ssim"] > rows[("mri", "zero-filled")]["ssim"]
    assert rows[("ct", "fast")]["psnr"] > rows[("ct", "fbp")]["psnr"] + 1.0
    assert rows[("mri", "langevin")]["ssim"] > rows[("mri", "zero-filled")]["ssim"]
    assert rows[("ct", "langevin")]["psnr"] > rows[("ct", "fbp")]["psnr"] + 1.0
    assert "| mri | fast |" in proc.stdout


def _panels(rng, shape=(2, 64, 64)):
    yy, xx = np.mgrid[-1:1:64j, -1:1:64j]
    ref = np.stack([((xx ** 2 + yy ** 2) < 0.6) * 1.0, ((xx ** 2 + yy ** 2) < 0.5) * 0.9])
    names = ["zero-filled", "sense", "cs-wavelet", "dps", "fast"]
    images = {"reference": ref, **{n: ref + 0.05 * rng.standard_normal(shape) for n in names},
              "std": np.abs(0.02 * rng.standard_normal(shape))}
    rows = [{"method": m, "psnr": p, "ssim": 0.8, "background": b, "samples": 2 if m == "fast" else 1}
            for m, p, b in [("zero-filled", 25, 0.01), ("sense", 27, 0.002), ("cs-wavelet", 29, 0.001),
                            ("dps", 18, 0.02), ("fast", 31, 0.0001)]]
    return images, rows


def test_demo_figure_layout():
    """Issue 25: best classical baseline, two slices, colorbars on error and std, no overlapping titles, and a
    caption under a method that invents structure."""
    import matplotlib

    matplotlib.use("Agg")
    from medrecon.app.demo import demo_figure

    images, rows = _panels(np.random.default_rng(0))
    fig = demo_figure("mri", images, rows)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2 * 6  # 2 slices x (reference, cs-wavelet, dps, fast, error, std)
    assert {ax.get_title().split(":")[0] for ax in panels} >= {"reference", "cs-wavelet", "dps", "fast"}
    assert len(fig.axes) - len(panels) == 4  # a colorbar beside each error and std panel
    sup = fig._suptitle.get_window_extent(renderer)
    titles = [ax.title.get_window_extent(renderer) for ax in panels]
    assert not any(sup.overlaps(t) for t in titles)
    assert not any(a.overlaps(b) for i, a in enumerate(titles) for b in titles[i + 1:])
    captions = [ax.get_xlabel() for ax in panels if ax.get_xlabel()]
    assert captions == ["invented structure: background 2.0% of the object"]  # dps only, under the last slice


def test_demo_method_lists():
    """The reduced demo leaves out CT DPS (which recon warns against below 1000 steps); --full keeps it."""
    from medrecon.app.demo import _methods

    assert "dps" in _methods("mri") and "dps" in _methods("mri", full=True)
    assert "dps" not in _methods("ct") and "dps" in _methods("ct", full=True)
    assert {"fbp", "tv", "fast", "langevin"} <= set(_methods("ct"))


def test_demo_precision_choice():
    from medrecon.app.demo import _precision
    from medrecon.device import cpu_has_native_bf16

    assert _precision("fp32", "cpu") is False and _precision("bf16", "cpu") is True
    assert _precision("bf16", "cuda") is True and _precision("auto", "cuda") is False
    assert _precision("auto", "cpu") is cpu_has_native_bf16()
    with pytest.raises(ValueError, match="precision must be"):
        _precision("fp16", "cpu")
