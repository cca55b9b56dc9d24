"""Command-line parser for ``medrecon benchmark`` (registered into medrecon.cli)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from medrecon.cli import EXTRA_PARSERS, command


def _names(values: list[str] | None) -> list[str] | None:
    """``--methods a,b c`` -> ``[a, b, c]`` (commas and spaces both separate)."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def _add_benchmark(sub) -> None:
    p = sub.add_parser("benchmark", help="benchmark every method on a suite of held-out data",
                       description="Run a benchmark suite (data_manifests/suites/NAME.json or a manifest file) and write "
                                   "OUT/results.json, OUT/report.md and OUT/figures/*.png.")
    p.add_argument("--suite", required=True, help="suite name (smoke, mri-4x, mri-8x, ct-60, ct-120, fastmri) or a "
                                                  "manifest .json/.yaml")
    p.add_argument("--out", required=True, help="output folder")
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
    p.add_argument("--params", default=None, metavar="TUNED_JSON", help="settings from an earlier --tune run")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true", help="no sampler progress bars")


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
        parts += ["--params", a.params]
    parts += ["--no-figures"] * a.no_figures + ["--out", a.out]
    return shlex.join(parts)


@command("benchmark")
def _benchmark(a: argparse.Namespace) -> int:
    from medrecon.benchmark import BenchmarkConfig, run_benchmark
    from medrecon.errors import InputError

    if a.tune_only and not a.tune:
        raise InputError("--tune-only needs --tune")
    if a.tune and a.params:
        raise InputError("--tune and --params exclude each other: --tune chooses the settings itself")
    cfg = BenchmarkConfig(suite=a.suite, out=Path(a.out), methods=_names(a.methods), datasets=_names(a.datasets),
                          device=a.device, data_root=a.data_root, tune=a.tune, tune_only=a.tune_only,
                          params=Path(a.params) if a.params else None, figures=not a.no_figures,
                          progress=not a.quiet, command=_command_line(a))
    results = run_benchmark(cfg)
    failed = [f"{r['dataset']}/{r['method']}" for r in results.get("rows", []) if r.get("error")]
    if failed:
        print(f"medrecon: {len(failed)} method(s) failed: {', '.join(failed)} (see {a.out}/report.md)")
        return 1
    return 0


EXTRA_PARSERS.append(("benchmark", _add_benchmark))
