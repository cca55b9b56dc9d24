"""Command-line parser for ``medrecon benchmark`` (registered into medrecon.cli)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from medrecon.cli.main import EXTRA_PARSERS, command


def _names(values: list[str] | None) -> list[str] | None:
    """``--methods a,b c`` -> ``[a, b, c]`` (commas and spaces both separate)."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def _add_benchmark(sub) -> None:
    p = sub.add_parser("benchmark", help="benchmark every method on a suite of held-out data",
                       description="Run a benchmark suite (medrecon/data/suites/NAME.json or a manifest file) and write "
                                   "OUT/results.json, OUT/report.md and OUT/figures/*.png.")
    p.add_argument("--suite", required=True, help="suite name (smoke, mri-4x, mri-8x, ct-60, ct-120, fastmri) or a "
                                                  "manifest .json/.yaml")
    p.add_argument("--out", default=None, help="output folder (required, except with --save-excerpt)")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="methods to run (comma- or space-separated): zero-filled, sense, cs-wavelet, cs-tv, fbp, dps, "
                        "fast (default: all of the suite)")
    p.add_argument("--datasets", nargs="+", default=None, metavar="NAME", help="only these datasets of the suite")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="folder the suite's files are relative to (fastmri: your multicoil train/val folder)")
    p.add_argument("--tune", action="store_true",
                   help="choose regularization weights and the DPS step size on the tuning split first "
                        "(writes OUT/tuned.json), then run the test split with them")
    p.add_argument("--tune-only", action="store_true", help="with --tune: stop after writing OUT/tuned.json")
    p.add_argument("--params", nargs="+", default=None, metavar="TUNED_JSON",
                   help="settings from earlier --tune runs; several files are merged (e.g. the classical weights of "
                        "one run and the fast sampler's settings of another), each method set by one file only")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--prior", nargs="+", default=None, metavar="MODALITY=PRIOR",
                   help="prior per modality, a name or bundle folder, e.g. mri=/path/to/bundle (default: shipped)")
    p.add_argument("--save-excerpt", default=None, metavar="NPZ",
                   help="write the slices the suite uses (test and tuning) to NPZ, then exit; run it with --excerpt "
                        "where the source data are not")
    p.add_argument("--excerpt", default=None, metavar="NPZ", help="read the volume datasets from a --save-excerpt file")
    p.add_argument("--quiet", action="store_true", help="no sampler progress bars")
    p.add_argument("--seed", type=int, default=None,
                   help="the samplers' seed, replacing the suite's (default: the suite's, usually 0); rerun with "
                        "another to see the seed-to-seed spread. Masks and noise keep the suite's seeds")


def _command_line(a: argparse.Namespace) -> str:
    """The command as a user would retype it (recorded in the report)."""
    parts = ["medrecon", "benchmark", "--suite", a.suite]
    if a.methods:
        parts += ["--methods", ",".join(_names(a.methods))]
    if a.datasets:
        parts += ["--datasets", ",".join(_names(a.datasets))]
    parts += ["--device", a.device]
    if a.data_root:
        parts += ["--data-root", a.data_root]
    parts += ["--tune"] * a.tune + ["--tune-only"] * a.tune_only
    if a.params:
        parts += ["--params", *a.params]
    if a.prior:
        parts += ["--prior", *a.prior]
    if a.excerpt:
        parts += ["--excerpt", a.excerpt]
    if a.seed is not None:
        parts += ["--seed", str(a.seed)]
    parts += ["--no-figures"] * a.no_figures + ["--out", a.out]
    # results.json and report.md are shared: folders may name a patient, so paths keep their base names
    from medrecon.io.run_record import arg_basename

    return shlex.join(arg_basename(p) for p in parts)


@command("benchmark")
def _benchmark(a: argparse.Namespace) -> int:
    from medrecon.benchmark import BenchmarkConfig, run_benchmark
    from medrecon.errors import InputError

    if a.tune_only and not a.tune:
        raise InputError("--tune-only needs --tune")
    if a.tune and a.params:
        raise InputError("--tune and --params exclude each other: --tune chooses the settings itself")
    if a.save_excerpt:
        return _save_excerpt(a)
    if not a.out:
        raise InputError("--out is required (the folder for results.json, report.md and figures)")
    cfg = BenchmarkConfig(suite=a.suite, out=Path(a.out), methods=_names(a.methods), datasets=_names(a.datasets),
                          device=a.device, data_root=a.data_root, tune=a.tune, tune_only=a.tune_only,
                          params=[Path(p) for p in a.params or []], figures=not a.no_figures,
                          progress=not a.quiet, command=_command_line(a),
                          excerpt=Path(a.excerpt) if a.excerpt else None, priors=_priors(a.prior), seed=a.seed)
    results = run_benchmark(cfg)
    failed = [f"{r['dataset']}/{r['method']}" for r in results.get("rows", []) if r.get("error")]
    if failed:
        print(f"medrecon: {len(failed)} method(s) failed: {', '.join(failed)} (see {a.out}/report.md)")
        return 1
    return 0


def _priors(specs: list[str] | None) -> dict:
    """``["mri=NAME", "ct=DIR"]`` -> ``{"mri": "NAME", "ct": "DIR"}``."""
    from medrecon.errors import InputError

    out = {}
    for spec in specs or []:
        mod, sep, name = spec.partition("=")
        if not sep or mod not in ("mri", "ct") or not name:
            raise InputError(f"--prior {spec!r}: expected mri=NAME_OR_FOLDER or ct=NAME_OR_FOLDER")
        out[mod] = name
    return out


def _save_excerpt(a: argparse.Namespace) -> int:
    from medrecon.benchmark.data import data_root
    from medrecon.benchmark.excerpt import save_excerpt
    from medrecon.benchmark.manifest import load_suite

    suite = load_suite(a.suite)
    meta = save_excerpt(suite, data_root(suite, a.data_root), Path(a.save_excerpt))
    n = sum(len(d["slices"]) for d in meta["datasets"].values())
    size = Path(a.save_excerpt).stat().st_size / 2 ** 20
    print(f"wrote {a.save_excerpt}: {n} slice(s) of {len(meta['datasets'])} dataset(s) of suite {suite.name} "
          f"({size:.1f} MiB); run it with --excerpt {a.save_excerpt}")
    return 0


EXTRA_PARSERS.append(("benchmark", _add_benchmark))
