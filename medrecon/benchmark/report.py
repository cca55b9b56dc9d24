"""``report.md``: one markdown table per dataset with both metric conventions, clearly labelled."""

from __future__ import annotations

from pathlib import Path

from medrecon import methods as registry

from .manifest import Suite

__all__ = ["format_report", "write_report"]

_CONVENTIONS = """\
**How to read these tables.**

- **fastMRI convention (volume max)** — exactly fastMRI's `evaluate.py`: the test slices of a volume are
  stacked as one volume; PSNR is computed over the whole volume and SSIM is the mean over slices, both with
  the *volume's* maximum as the peak (`data_range`); NMSE is `||gt - pred||^2 / ||gt||^2` over the volume.
  These are the `psnr`, `ssim`, `nmse` fields of `results.json`.
- **per-slice convention** — what many diffusion papers report: every slice of the target and of the
  reconstruction is divided by its own maximum, PSNR/SSIM use a peak of 1, and the numbers are averaged
  over slices (`per_slice` in `results.json`). The two conventions are not comparable with each other.
- **mean ± std** — over volumes (sample std) when a dataset has several; with a single volume, over its
  test slices, for the fastMRI columns using the same volume maximum as the peak for every slice.
- CT images are scored in HU + 1000 (air = 0). MRI targets are the RSS of the fully sampled coil images.
- **s/slice** — wall-clock seconds per slice of the whole reconstruction (coil-map estimation included;
  simulating the measurements and loading the prior excluded). **NFE** — network evaluations per
  posterior sample. **peak MiB** — {peak}.
- **background %** — the hallucination measure (`background` in `results.json`, fastMRI scale): the
  reconstruction's energy where the reference is background (farther than 3 px from any pixel above 5 % of
  the volume maximum), in percent of the reference object's energy. Aliasing, noise and invented structure
  all count; an empty background scores 0.
- **misfit** — how well the output explains its own measurement: `||A x - y|| / ||y||` (learned methods: of
  the posterior mean), mean over slices (`misfit` in `results.json`); in brackets the value the true image
  would give, `sqrt(m noise_var) / ||y||` over the m measured entries (`noise_misfit`; 0 for noiseless data).
  Far above it, the output leaves data unexplained; far below it, it fits noise. – where the output cannot
  be put through the forward operator (MRI classical methods return magnitudes).
"""


def _pm(mean: float | None, std: float | None, fmt: str) -> str:
    if mean is None:
        return "–"
    return f"{mean:{fmt}}" + (f" ± {std:{fmt}}" if std is not None else "")


def _settings(params: dict) -> str:
    names = (*registry.param_names(), "samples")  # every method's settings (final_dc only when on)
    keep = {k: v for k, v in (params or {}).items() if k in names and not (k == "final_dc" and not v)}
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in keep.items()) or "–"


def _describe(name: str, rec: dict) -> str:
    a = rec["acquisition"]
    vols = rec["volumes"]
    if len(vols) == 1:
        n = len(vols[0]["slices"])
        where = f"{n} test slice{'s' * (n != 1)} {vols[0]['slices']} of `{rec['file']}`"
    else:
        where = f"{sum(len(v['slices']) for v in vols)} slices of {len(vols)} test volumes in `{rec['file'] or '.'}`"
    if rec["modality"] == "mri" and "keep" in a:  # real k-space undersampled further
        acq = (f"real k-space `{a['kspace']}`, {a['coils']} coils, {a['acquired_fraction']:.1%} of the grid acquired, "
               f"centre plus {a['keep']:.0%} of the other samples kept ({a['kept_fraction']:.1%}, "
               f"{a['acceleration']}x, seed {a['mask_seed']}); reference `{a['reference']}`")
        size = a.get("image_size")
    elif rec["modality"] == "mri" and "trajectory" in a:  # non-Cartesian (issue 20)
        acq = (f"{a['trajectory']} trajectory, {a['spokes']} spokes of {a['readout']} samples, {a['coils']} coils, "
               f"k-space noise std {a['noise_std']}")
        size = a.get("image_size")
    elif rec["modality"] == "mri":
        acq = (f"{a['mask_kind']} mask {a['acceleration']}x (achieved {a['achieved_acceleration']}x), centre fraction "
               f"{a['center_fraction']}, mask seed {a['mask_seed']}, {a['coils']} coils")
        if "noise_std" in a:
            acq += f", k-space noise std {a['noise_std']}"
        size = a.get("image_size") or a.get("recon_size")
    else:
        dose = f"{a['photons']:.0e} photons/ray" if a.get("photons") else "noiseless"
        acq = f"{a['views']} {a['geometry']}-beam views, {dose}, {a['pixel_mm']} mm pixels"
        size = a.get("image_size")
    return (f"{rec['modality'].upper()}, {where} (licence: {rec['licence']}); "
            f"{size[0]}x{size[1]}; {acq}.")


def _bg(r: dict) -> str:
    """The hallucination measure in percent of the object's energy (records older than it have none)."""
    b = r.get("background")
    return "–" if b is None else _pm(100.0 * b, None if r.get("background_std") is None else 100.0 * r["background_std"],
                                     ".3f")


def misfit_cell(r: dict) -> str:
    """The data misfit with the noise level in brackets (records older than it, and MRI classical methods: –)."""
    m, n = r.get("misfit"), r.get("noise_misfit")
    return "–" if m is None else f"{m:.4f}" + ("" if n is None else f" ({n:.4f})")


def _table(rows: list[dict]) -> list[str]:
    lines = [("| method | PSNR dB (fastMRI) | SSIM (fastMRI) | NMSE (fastMRI) | PSNR dB (per-slice) | SSIM (per-slice) "
              "| background % | misfit (noise) | s/slice | NFE | peak MiB | settings |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['method']} | failed: {r['error']} | | | | | | | | | | |")
            continue
        p = r["per_slice"]
        lines.append(f"| {r['method']} | {_pm(r['psnr'], r['psnr_std'], '.2f')} | {_pm(r['ssim'], r['ssim_std'], '.4f')} "
                     f"| {_pm(r['nmse'], r['nmse_std'], '.4f')} | {_pm(p['psnr'], p['psnr_std'], '.2f')} "
                     f"| {_pm(p['ssim'], p['ssim_std'], '.4f')} | {_bg(r)} | {misfit_cell(r)} | {r['seconds_per_slice']:.2f} "
                     f"| {r['nfe']} | {r['peak_mem_mb']:.0f} | {_settings(r['params'])} |")
    return lines


def volume_table(rows: list[dict]) -> list[str]:
    """The volume metrics of contiguous test slabs (:mod:`medrecon.metrics3d`), one row per method that has them."""
    have = [r for r in rows if r.get("volume3d") and not r.get("error")]
    if not have:
        return []
    lines = ["Volume metrics of the contiguous test slab (`medrecon.metrics3d`): 3-D PSNR (= the fastMRI PSNR) and "
             "3-D SSIM (7x7x7 window); the sagittal and coronal reformats' PSNR / SSIM, mean over the planes that "
             "cross the object; dz PSNR: the slice-to-slice differences (stripes) against the reference's.", "",
             "| method | 3-D PSNR dB | 3-D SSIM | sagittal PSNR / SSIM | coronal PSNR / SSIM | dz PSNR dB | s/volume "
             "| peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in have:
        v = r["volume3d"]

        def f(k: str, fmt: str) -> str:
            return f"{v[k]:{fmt}}" if v.get(k) is not None else "–"

        lines.append(f"| {r['method']} | {f('psnr3d', '.2f')} | {f('ssim3d', '.4f')} | {f('sag_psnr', '.2f')} / "
                     f"{f('sag_ssim', '.4f')} | {f('cor_psnr', '.2f')} / {f('cor_ssim', '.4f')} | {f('dz_psnr', '.2f')} "
                     f"| {r['seconds_total'] / max(1, r['n_volumes']):.0f} | {r['peak_mem_mb']:.0f} |")
    return lines + [""]


def format_report(results: dict, suite: Suite) -> str:
    """The report's markdown text."""
    lines = [f"# medrecon benchmark: suite `{results['suite']}`", ""]
    if suite.description:
        lines += [suite.description, ""]
    lines += ["Made with:", "", "```", results.get("command") or "medrecon benchmark", "```", "",
              f"- date: {results['date']}; medrecon {results['medrecon_version']}"
              + (f" (git {results['git_commit']})" if results.get("git_commit") else "")
              + f"; torch {results['torch_version']}",
              f"- device: `{results['device']}` ({results['device_name']}, {results['torch_threads']} torch threads)",
              f"- suite manifest: `{results['manifest']['path']}` (sha256 {results['manifest']['sha256'][:12]}...)",
              f"- settings: {results['params_source']}; sampler seed {results.get('sampler_seed', 0)}",
              "- priors: " + (", ".join(f"{m}: {p['name']} ({p['sha256'][:12]}...)" for m, p in results['priors'].items())
                               or "none used"),
              f"- total wall time: {results['wall_seconds']:.0f} s", "",
              _CONVENTIONS.replace("{peak}", results["peak_mem_kind"]).rstrip("\n")]
    if results["device"] == "cpu":
        lines += ["  On a CPU, memory the process already held (freed by an earlier method and kept by the allocator)",
                  "  is reused without growth, so a small value means the method fitted in memory already held;",
                  "  `peak_process_mb` in `results.json` is the absolute peak resident set during the method."]
    lines.append("")
    for name, rec in results["datasets"].items():
        rows = [r for r in results["rows"] if r["dataset"] == name]
        lines += [f"## {name}", "", _describe(name, rec), ""] + _table(rows) + [""] + volume_table(rows)
        fig = results.get("figures", {}).get(name)
        if fig:
            lines += [f"![{name}: representative slice and error maps]({fig})", ""]
            reformats = Path(fig).with_name(f"{name}_reformats.png")
            if any(r["method"].endswith("(volume)") for r in rows):
                lines += [f"![{name}: sagittal and coronal reformats]({reformats.as_posix()})", ""]
    return "\n".join(lines)


def write_report(results: dict, suite: Suite, path: Path) -> Path:
    """Write ``report.md``."""
    from medrecon.io.atomic import write_text

    return write_text(path, format_report(results, suite))
