"""``medrecon demo``: simulate, reconstruct with every method, compare, and draw the figure.

Uses the small sample scans shipped in ``medrecon/data`` (held-out slices, never trained on; see
data_manifests/samples.json for sources and licences) and the shipped default priors. On a CPU it
uses reduced settings (60-step strided DPS on MRI only, 25-step fast sampler, the Langevin sampler at its 100 levels) so the
whole demo finishes in about 3 minutes on 2 cores; ``--full`` uses the full 1000-step DPS (on CT too) meant
for a GPU. On a CPU with native bf16 the networks run in bf16 (``--precision``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from medrecon.device import resolve_device
from medrecon.io.atomic import atomic_write, write_text
from medrecon.recon.config import ReconConfig

__all__ = ["run_demo", "SAMPLES"]

DATA = Path(__file__).resolve().parents[1] / "data"  # medrecon/data: the shipped sample scans
SAMPLES = {"mri": DATA / "mri_t1_vsseg001_2slices.nii.gz", "ct": DATA / "ct_totalseg_2slices.nii.gz"}
# Demo acquisition settings: a 4x fastMRI random mask (centre 0.16: the 128-pixel sample is small, so
# 8% of its columns would leave ESPIRiT only 10 calibration lines) and a 60-view parallel-beam scan.
MRI_SIM = {"mask": "random", "accel": 4, "center_fraction": 0.16, "coils": 8, "noise_std": 0.002, "seed": 0}
CT_SIM = {"views": 60, "geometry": "parallel", "photons": None, "seed": 0}


def _settings(full: bool) -> dict:
    if full:
        return {"dps": {"steps": 1000}, "fast": {"steps": 50}, "langevin": {"steps": 100}}
    # Langevin at its library default of 100 levels: with bf16 networks the demo has the time (issue 22: at most
    # 3 minutes on 2 cores), and 100 levels beat 50 on mri-4x's tuning slices (31.31 against 30.94 dB).
    return {"dps": {"steps": 60}, "fast": {"steps": 25}, "langevin": {"steps": 100}}


def _methods(modality: str, full: bool = False) -> list[str]:
    """The registered methods marked for the demo (``MethodSpec.demo``), in registration order.

    The reduced CPU demo leaves out DPS on CT: below its 1000 steps it invents structure (16-18 dB where FBP
    gives 30; ``recon`` warns against it, README "Robustness") and it was the demo's slowest part (143 s of
    the CPU demo on 2026-12-06). ``--full`` runs it at 1000 steps.
    """
    from medrecon import methods as registry

    names = list(registry.names(modality, demo=True))
    return names if full or modality != "ct" else [m for m in names if m != "dps"]


def _precision(precision: str, device: str) -> bool:
    """Whether the demo's networks run under bf16 autocast: ``bf16``/``fp32`` as asked; ``auto`` uses bf16
    on a CPU with native bf16 (about 2x faster there; the demo table's quality was measured both ways,
    ``benchmarks/results/demo_precision_2026-12-07``) and fp32 elsewhere (GPU quality with bf16 in the demo
    is unmeasured)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    from medrecon.device import cpu_has_native_bf16

    return device == "cpu" and cpu_has_native_bf16()


def _run_modality(modality: str, out: Path, device: str, full: bool, bf16: bool = False) -> tuple[list[dict], dict]:
    from medrecon.app.pipeline import load_input, reconstruct, write_outputs
    from medrecon.app.simulate import simulate_ct_file, simulate_mri_file
    from medrecon import methods as registry

    out.mkdir(parents=True, exist_ok=True)
    meas = out / f"{modality}_measurements.h5"
    if modality == "mri":
        simulate_mri_file(SAMPLES["mri"], meas, **MRI_SIM)
    else:
        simulate_ct_file(SAMPLES["ct"], meas, **CT_SIM)
    inp = load_input(meas)
    rows, images = [], {"reference": inp.target}
    settings = _settings(full)
    for method in _methods(modality, full):
        extra = settings.get(method, {})
        cfg = ReconConfig(method=method, device=device, seed=0, samples=2 if method == "fast" else 1,
                          progress=True, autocast=bf16, **extra)
        t0 = time.perf_counter()
        res = reconstruct(inp, cfg)
        seconds = time.perf_counter() - t0
        write_outputs(out / f"{modality}_{method}.nii.gz", inp, res, cfg)
        gt = inp.target.astype(np.float64) + (1000.0 if modality == "ct" else 0.0)
        pred = res.image.astype(np.float64) + (1000.0 if modality == "ct" else 0.0)
        from medrecon.metrics import background_energy, volume_metrics

        m = volume_metrics(gt, pred)
        rows.append({"modality": modality, "method": method, "psnr": round(m["psnr"], 2), "ssim": round(m["ssim"], 4),
                     "nmse": round(m["nmse"], 5), "background": round(background_energy(gt, pred), 5),
                     "seconds": round(seconds, 2), "nfe": res.nfe,
                     "samples": cfg.samples, "bf16": bf16 and registry.is_learned(method),
                     **{k: v for k, v in res.params.items() if k in ("steps", "zeta", "cg_iters")}})
        images[method] = res.image
        if res.std is not None and cfg.samples > 1:
            images["std"] = res.std
        print(f"  {modality:3s} {method:11s} PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.4f}  {seconds:7.1f} s  "
              f"NFE {res.nfe}", flush=True)
    return rows, images


#: A method's panel gets a caption when its background energy (medrecon.metrics.background_energy) is above the
#: fast sampler's documented bound, or its PSNR is this far below the simplest method (zero-filled / FBP).
CAPTION_BACKGROUND = 0.005
CAPTION_PSNR_DROP_DB = 3.0


def _baseline(modality: str, rows: list[dict]) -> str:
    """The best classical method of the run by PSNR (issue 25: not the weakest one)."""
    from medrecon import methods as registry

    classical = [r for r in rows if not registry.get(r["method"]).learned and r["method"] in registry.names(modality)]
    return max(classical, key=lambda r: r["psnr"])["method"]


def _caption(method: str, row: dict, simplest: dict | None) -> str | None:
    """One line under a panel that shows structure the data do not support, or None."""
    bg = row.get("background")
    if bg is not None and bg > CAPTION_BACKGROUND:
        return f"invented structure: background {100 * bg:.1f}% of the object"
    if simplest is not None and method != simplest["method"] and row["psnr"] < simplest["psnr"] - CAPTION_PSNR_DROP_DB:
        return f"{simplest['psnr'] - row['psnr']:.0f} dB below {simplest['method']}: structure not in the data"
    return None


def _figure(modality: str, images: dict, rows: list[dict], path: Path) -> None:
    """Write :func:`demo_figure` as a PNG (atomically)."""
    import matplotlib.pyplot as plt

    fig = demo_figure(modality, images, rows)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def demo_figure(modality: str, images: dict, rows: list[dict]):
    """Two slices x (reference, best classical, DPS, fast, Langevin, |fast - reference|, fast std), with colorbars; a red
    caption under a method that shows structure the data do not support (:func:`_caption`). Returns the figure.

    Shapes:
        images: ``{name: (S, H, W)}`` with ``reference``, every method of ``rows`` and optionally ``std``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = _baseline(modality, rows)
    learned = [c for c in ("dps", "fast", "langevin", "daps") if c in images]
    cols = ["reference", base, *learned, "error", "std"]
    ref_all = images["reference"]
    slices = list(range(min(2, ref_all.shape[0])))
    vmin, vmax = (-160, 240) if modality == "ct" else (0, float(np.percentile(ref_all, 99.5)))
    by = {r["method"]: r for r in rows}
    simplest = by.get("zero-filled" if modality == "mri" else "fbp")
    std = images.get("std")
    err_max = (vmax - vmin) * 0.25
    std_max = float(np.percentile(std, 99.5)) if std is not None else 1.0
    fig, axes = plt.subplots(len(slices), len(cols), figsize=(2.3 * len(cols), 2.5 * len(slices) + 0.9),
                             squeeze=False, layout="constrained")
    for r, z in enumerate(slices):
        ref = ref_all[z]
        for ax, c in zip(axes[r], cols):
            ax.set_xticks([])
            ax.set_yticks([])
            if c == "error":
                im = ax.imshow(np.abs(images["fast"][z] - ref), cmap="magma", vmin=0, vmax=err_max)
                _colorbar(fig, im, ax, modality)
                title = "|fast - reference|"
            elif c == "std":
                if std is None:
                    ax.text(0.5, 0.5, "one sample:\nno std", ha="center", va="center", fontsize=8)
                    title = "fast posterior std"
                else:
                    im = ax.imshow(std[z], cmap="viridis", vmin=0, vmax=std_max)
                    _colorbar(fig, im, ax, modality)
                    title = f"fast posterior std ({by['fast']['samples']} samples)"
            else:
                ax.imshow(images[c][z], cmap="gray", vmin=vmin, vmax=vmax)
                title = c if c == "reference" else f"{c}: {by[c]['psnr']:.1f} dB / {by[c]['ssim']:.3f}"
                note = None if c == "reference" else _caption(c, by[c], simplest)
                if note and r == len(slices) - 1:
                    ax.set_xlabel(note, fontsize=6.5, color="firebrick")
            if c == "reference":
                ax.set_ylabel(f"slice {z}", fontsize=8)
            ax.set_title(title, fontsize=7.5)
    fig.suptitle(f"medrecon demo, {modality.upper()}: PSNR / SSIM of the volume (fastMRI convention); "
                 f"baseline = best classical method ({base})", fontsize=9)
    return fig


def _colorbar(fig, im, ax, modality: str) -> None:
    bar = fig.colorbar(im, ax=ax, shrink=0.8)
    bar.ax.tick_params(labelsize=6.5)
    bar.set_label("HU" if modality == "ct" else "magnitude", fontsize=7)


def run_demo(modality: str, out: Path, device: str = "auto", full: bool = False, precision: str = "auto") -> dict:
    """Run the demo for ``mri``, ``ct`` or ``both``; writes metrics.json, NIfTI files and PNG figures.

    ``precision``: the networks' arithmetic, ``auto`` (bf16 on a CPU with native bf16, else fp32), ``fp32``
    or ``bf16``.
    """
    dev = resolve_device(device)
    bf16 = _precision(precision, dev.type)
    mods = ["mri", "ct"] if modality == "both" else [modality]
    out.mkdir(parents=True, exist_ok=True)
    all_rows = []
    print(f"medrecon demo on {dev} ({'full' if full else 'reduced CPU'} settings, networks in "
          f"{'bf16' if bf16 else 'fp32'}) -> {out}")
    t_start = time.perf_counter()
    for m in mods:
        rows, images = _run_modality(m, out, str(dev), full, bf16)
        _figure(m, images, rows, out / f"{m}_figure.png")
        all_rows.extend(rows)
    print()
    print("| modality | method | PSNR (dB) | SSIM | seconds | NFE |")
    print("|---|---|---|---|---|---|")
    for r in all_rows:
        print(f"| {r['modality']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['seconds']:.1f} | {r['nfe']} |")
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f} s")
    result = {"device": str(dev), "full": full, "bf16": bf16, "total_seconds": round(total, 1),
              "mri_simulation": MRI_SIM, "ct_simulation": CT_SIM, "rows": all_rows}
    write_text(out / "metrics.json", json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {out / 'metrics.json'} and figures {', '.join(str(out / f'{m}_figure.png') for m in mods)}")
    return result
