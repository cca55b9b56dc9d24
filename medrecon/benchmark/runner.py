"""``medrecon benchmark``: every method of a suite on its test split -> results.json, report.md, figures."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

from medrecon import methods as registry
from medrecon.device import resolve_device
from medrecon.errors import InputError

from .data import Case, data_root, dataset_source, describe_split, load_cases, register_identifiers, sha256_of
from .excerpt import read_excerpt
from .manifest import VOLUME_KEYS, Dataset, Suite, load_suite, volume_label
from .methods import peak_mem_kind
from .params import read_params_files, settings_for
from .scoring import finite_or_none
from .session import Evaluation, Session

__all__ = ["BenchmarkConfig", "plan_suite", "run_benchmark"]


@dataclass
class BenchmarkConfig:
    """What ``medrecon benchmark`` parses its arguments into.

    Attributes:
        suite: suite name (``medrecon/data/suites/NAME.json``) or a manifest path.
        out: output folder.
        methods: benchmark method names to run (default: every method of each dataset).
        datasets: dataset names to run (default: all).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        data_root: folder the manifest's file paths are relative to (overrides the manifest).
        tune: tune on the tuning split first (writes ``out/tuned.json``), then test with the result.
        tune_only: stop after tuning.
        params: tuned.json file(s) whose settings replace the manifest's (several are merged; a method may be
            set by one file only).
        figures: write PNG figures.
        progress: sampler progress bars (on a terminal).
        command: the command line, recorded in the report.
        excerpt: a ``--save-excerpt`` file to read the volume datasets from instead of their sources.
        priors: modality -> prior name or bundle folder (default: the shipped prior of each modality).
        seed: the samplers' seed for every slice, replacing the suite's (to measure seed-to-seed spread); None keeps
            the suite's. The acquisitions (masks, noise) keep their own seeds, so the data do not change.
    """

    suite: str
    out: Path
    methods: list[str] | None = None
    datasets: list[str] | None = None
    device: str = "auto"
    data_root: str | None = None
    tune: bool = False
    tune_only: bool = False
    params: list[Path] = field(default_factory=list)
    figures: bool = True
    progress: bool = True
    command: str = ""
    excerpt: Path | None = None
    priors: dict = field(default_factory=dict)
    seed: int | None = None


def _missing_programs() -> dict[str, str]:
    """``{benchmark method: program}`` for registered methods whose outside program is not installed."""
    import shutil

    from medrecon.baselines.bart import bart_available

    out = {}
    for m in registry.METHODS.values():
        if m.needs and not (bart_available() if m.needs == "bart" else shutil.which(m.needs)):
            out[m.bench_name or m.name] = m.needs
    return out


def plan_suite(suite: Suite, methods: list[str] | None, datasets: list[str] | None) -> list[tuple[Dataset, list[str]]]:
    """``[(dataset, methods)]`` to run, in manifest order, after the ``--methods``/``--datasets`` filters."""
    known = registry.bench_names()
    if methods:
        bad = [m for m in methods if m not in known]
        if bad:
            raise InputError(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(known)}")
    names = [d.name for d in suite.datasets]
    if datasets:
        bad = [d for d in datasets if d not in names]
        if bad:
            raise InputError(f"suite {suite.name} has no dataset {', '.join(bad)}; it has {', '.join(names)}")
    missing = _missing_programs()
    for m in methods or []:
        if m in missing:
            raise InputError(f"method {m} needs the '{missing[m]}' binary"
                             + (" (Debian/Ubuntu: apt install bart)" if missing[m] == "bart" else ""))
    plan = []
    for ds in suite.datasets:
        if datasets and ds.name not in datasets:
            continue
        # a method that calls an outside program (bart-pics) is optional: listed by a suite, it runs only
        # where that program is installed
        chosen = [m for m in ds.methods if (not methods or m in methods) and m not in missing]
        if chosen:
            plan.append((ds, chosen))
    if not plan:
        raise InputError(f"none of the methods {', '.join(methods or [])} is in suite {suite.name}")
    return plan


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    import subprocess

    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                           text=True, timeout=5, check=False)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _mean_over_slices(runs: list, attr: str) -> float | None:
    """The mean of a per-slice list over every slice of every run; None if any run lacks it (or none ran)."""
    values = [getattr(r, attr) for r in runs]
    if not values or any(v is None for v in values):
        return None
    flat = [x for v in values for x in v]
    return sum(flat) / len(flat) if flat else None


def _row(ds: Dataset, method: str, ev: Evaluation, settings: dict) -> dict:
    s = ev.summary
    row = {"dataset": ds.name, "modality": ds.modality, "method": method,
           "psnr": s.get("psnr"), "ssim": s.get("ssim"), "nmse": s.get("nmse"),
           "seconds_per_slice": ev.seconds / max(1, ev.n_slices),
           "nfe": ev.runs[-1].nfe if ev.runs else None,
           "peak_mem_mb": max((r.peak_mem_mb for r in ev.runs), default=None),
           "peak_process_mb": max((r.peak_total_mb for r in ev.runs if r.peak_total_mb is not None), default=None),
           "psnr_std": s.get("psnr_std"), "ssim_std": s.get("ssim_std"), "nmse_std": s.get("nmse_std"),
           "background": s.get("background"), "background_std": s.get("background_std"),
           "spread": s.get("spread"), "per_slice": s.get("per_slice"), "volume3d": s.get("volume3d"),
           "misfit": _mean_over_slices(ev.runs, "misfit"), "noise_misfit": _mean_over_slices(ev.runs, "noise_misfit"),
           "n_volumes": len(ev.volumes), "n_slices": ev.n_slices, "seconds_total": ev.seconds,
           "params": ev.runs[-1].params if ev.runs else settings, "volumes": ev.volumes}
    if ev.error:
        row["error"] = ev.error
    return row


def _dataset_record(ds: Dataset, cases: list[Case]) -> dict:
    return {"modality": ds.modality, "source": ds.source, "file": ds.file.path, "sha256": ds.file.sha256,
            "licence": ds.file.licence, "split": "test",
            "volumes": [{"volume": c.volume, "slices": c.slices} for c in cases], "acquisition": cases[0].info}


def _run_dataset(session: Session, ds: Dataset, methods: list[str], overrides: dict, figures_dir: Path | None,
                 on_method=None):
    cases = load_cases(session.suite, ds, session.sources[ds.name], "test")
    rows, images = [], {}
    for method in methods:
        settings = settings_for(ds.methods[method], overrides, ds.name, method)
        runs = [(method, {k: v for k, v in settings.items() if k not in VOLUME_KEYS})]
        if method in ds.volume_methods:  # the same method in volume mode, its own row
            runs.append((volume_label(method), {**settings, "volume": True}))
        for label, s in runs:
            session.step(f"{ds.name} ({ds.modality.upper()}) {label} on {describe_split(cases)} {s or ''}")
            ev = session.evaluate(cases, method, s, ds.slice_chunk)
            rows.append(_row(ds, label, ev, s))
            if ev.runs:
                images[label] = ev.runs[0].image
            if on_method is not None:
                on_method(list(rows), _dataset_record(ds, cases))
    fig = None
    if figures_dir is not None and images:
        from .figures import dataset_figure

        fig = dataset_figure(ds, cases[0], images, rows, figures_dir)
        if ds.volume_methods and len(cases[0].slices) >= 3:
            from .figures import reformat_figure

            reformat_figure(ds, cases[0], images, rows, figures_dir)
    return rows, _dataset_record(ds, cases), fig


def run_benchmark(cfg: BenchmarkConfig) -> dict:
    """Run a suite; writes ``results.json``, ``report.md`` and figures to ``cfg.out`` and returns the results.

    Raises:
        InputError: bad suite/manifest, missing or altered data, unknown methods or datasets.
    """
    suite = load_suite(cfg.suite)
    if cfg.seed is not None:
        suite = dataclasses.replace(suite, seed=int(cfg.seed))
    plan = plan_suite(suite, cfg.methods, cfg.datasets)
    device = resolve_device(cfg.device)
    excerpt = read_excerpt(cfg.excerpt, suite) if cfg.excerpt else {}
    # A data folder is needed only for what the excerpt does not hold.
    root = data_root(suite, cfg.data_root) if cfg.data_root or any(ds.name not in excerpt for ds, _ in plan) else None
    # Every file is found and sha256-checked once, before any long computation; tuning and test reuse it.
    sources = {ds.name: dataset_source(suite, ds, root, excerpt) for ds, _ in plan}
    for ds, _ in plan:
        register_identifiers(ds, sources[ds.name])
    excerpt_info = {"file": Path(cfg.excerpt).name, "sha256": sha256_of(Path(cfg.excerpt))} if cfg.excerpt else None
    overrides = read_params_files(cfg.params, suite)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    from .tune import tune_steps, tune_suite

    n_test = 0 if cfg.tune_only else sum(len(m) + len(set(m) & set(ds.volume_methods)) for ds, m in plan)
    session = Session(suite, device, sources, cfg.progress, (tune_steps(plan) if cfg.tune else 0) + n_test,
                      priors=cfg.priors, excerpt_info=excerpt_info)
    session.log(f"medrecon benchmark: suite {suite.name} on {device} ({_device_name(device)}) -> {out}")
    params_source = ", ".join(str(p) for p in cfg.params) or "manifest"
    if cfg.tune:
        tuned = tune_suite(session, plan, out, cfg.command)
        for ds_name, methods in tuned.items():
            for m, s in methods.items():
                overrides.setdefault(ds_name, {}).setdefault(m, {}).update(s)
        params_source = f"tuned on the tuning split ({out / 'tuned.json'})"
        if cfg.tune_only:
            return {"suite": suite.name, "device": str(device), "tuned": tuned}
    rows, records, figures = [], {}, {}
    fig_dir = out / "figures" if cfg.figures else None
    for ds, methods in plan:
        # Rewritten after every method, so a long run that stops early (a time limit) keeps what it finished.
        def partial(done: list[dict], rec: dict, _name=ds.name) -> None:
            _write(session, cfg, suite, out, rows + done, {**records, _name: rec}, figures, params_source)

        r, rec, fig = _run_dataset(session, ds, methods, overrides, fig_dir, partial)
        rows.extend(r)
        records[ds.name] = rec
        if fig is not None:
            figures[ds.name] = str(fig.relative_to(out))
        results = _write(session, cfg, suite, out, rows, records, figures, params_source)
    session.log(f"wrote {out / 'results.json'}, {out / 'report.md'}" + (f" and {len(figures)} figure(s)" if figures else ""))
    return results


def _write(session: Session, cfg: BenchmarkConfig, suite: Suite, out: Path, rows: list[dict], records: dict,
           figures: dict, params_source: str) -> dict:
    from .report import write_report

    results = finite_or_none(_results(session, cfg, rows, records, figures, params_source))
    # Written beside and renamed into place (and through the privacy layer): a run stopped mid-write never
    # leaves a half file.
    from medrecon.io.atomic import atomic_write

    with atomic_write(out / "results.json") as tmp_json:
        tmp_json.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
        write_report(results, suite, out / "report.md")
    return results


def _results(session: Session, cfg: BenchmarkConfig, rows: list[dict], records: dict, figures: dict,
             params_source: str) -> dict:
    """The results.json document: the issue's fields first, then provenance."""
    device, suite = session.device, session.suite
    return {"suite": suite.name, "device": str(device), "rows": rows,
            "device_name": _device_name(device), "torch_threads": torch.get_num_threads(),
            "peak_mem_kind": peak_mem_kind(device),
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "command": cfg.command,
            "medrecon_version": _version(), "git_commit": _git_commit(), "torch_version": torch.__version__,
            "manifest": {"path": _rel(suite.path), "sha256": sha256_of(suite.path)}, "params_source": params_source,
            "priors": session.prior_info(), "sampler_seed": suite.seed, "datasets": records, "figures": figures,
            "excerpt": session.excerpt_info,
            "wall_seconds": round(_elapsed(session), 1)}


def _elapsed(session: Session) -> float:
    import time

    return time.perf_counter() - session.t_start


def _version() -> str:
    from medrecon import __version__

    return __version__


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(Path(__file__).resolve().parents[2]))
    except ValueError:
        return str(p)
