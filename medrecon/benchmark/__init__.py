"""``medrecon benchmark``: suites of held-out data, every method side by side, fastMRI-style numbers.

- :mod:`.manifest` — suite manifests (``medrecon/data/suites/*.json``) and their validation;
- :mod:`.data` — sha256-checked inputs and the simulated (or fastMRI) measurements of each split;
- :mod:`.methods` — one method on one case, timed, with peak memory;
- :mod:`.scoring` — fastMRI volume-max and per-slice metrics;
- :mod:`.tune` / :mod:`.params` — weights chosen on the tuning split, ``tuned.json``;
- :mod:`.runner` — the whole run; :mod:`.report` and :mod:`.figures` — report.md and PNGs.
"""

from .manifest import BENCH_METHODS, Suite, load_suite, suite_names
from .runner import BenchmarkConfig, run_benchmark

__all__ = ["BENCH_METHODS", "BenchmarkConfig", "Suite", "load_suite", "run_benchmark", "suite_names"]
