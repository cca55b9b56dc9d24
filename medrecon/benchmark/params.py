"""Tuned settings files (``tuned.json``): writing them after ``--tune``, reading them for ``--params``.

Layout::

    {"format": "medrecon-tuned/1", "suite": "mri-4x", "split": "tuning",
     "criterion": "PSNR, fastMRI volume convention, on the tuning split",
     "params": {"<dataset>": {"<method>": {"lam": 0.005}}},
     "grid": {"<dataset>": {"<method>": [{"lam": 0.002, "psnr": 30.1, "ssim": 0.8, "seconds": 12.0}, ...]}}}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from medrecon.errors import InputError

from .manifest import Suite, method_keys

__all__ = ["TUNED_FORMAT", "read_params", "read_params_files", "settings_for"]

TUNED_FORMAT = "medrecon-tuned/1"


def _valid(key: str, v) -> bool:
    """A tuned setting the suites accept: a method parameter or run setting with a valid value (numbers; the CT
    data term and the z solve by name)."""
    from medrecon.recon.problems import CT_DATA_TERMS

    from .manifest import _setting_ok

    if key not in method_keys():
        return False
    return v in CT_DATA_TERMS if key == "data_term" else _setting_ok(key, v)


def read_params(path: Path, suite: Suite) -> dict[str, dict[str, dict]]:
    """``{dataset: {method: settings}}`` from a tuned.json, checked against the suite.

    Raises:
        InputError: unreadable file, wrong format, or no dataset of the suite in it.
    """
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"cannot read --params {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"--params {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != TUNED_FORMAT or not isinstance(data.get("params"), dict):
        raise InputError(f"--params {path} is not a tuned.json written by `medrecon benchmark --tune` "
                         f"(format {TUNED_FORMAT!r} with a 'params' object)")
    names = {d.name: d for d in suite.datasets}
    params = data["params"]
    if not set(params) & set(names):
        raise InputError(f"--params {path} holds settings for {', '.join(sorted(params)) or 'no dataset'}, but suite "
                         f"{suite.name} has {', '.join(sorted(names))}")
    out: dict[str, dict[str, dict]] = {}
    for ds_name, methods in params.items():
        if ds_name not in names:
            continue
        if not isinstance(methods, dict):
            raise InputError(f"--params {path}: params.{ds_name} must map methods to settings")
        for method, settings in methods.items():
            if method not in names[ds_name].methods:
                raise InputError(f"--params {path}: dataset {ds_name} has no method {method!r} in suite {suite.name}")
            bad = [k for k, v in settings.items() if not _valid(k, v)]
            if bad:
                raise InputError(f"--params {path}: params.{ds_name}.{method} has invalid setting(s) {', '.join(bad)}")
        out[ds_name] = {m: dict(s) for m, s in methods.items()}
    return out


def read_params_files(paths: Sequence[Path], suite: Suite) -> dict[str, dict[str, dict]]:
    """Several tuned.json files merged, e.g. the classical weights of one tuning run and a sampler's settings of
    another (``--params A/tuned.json B/tuned.json``).

    Raises:
        InputError: as :func:`read_params`, or a dataset's method set by two files (one line, naming both):
            which one would win is not something a reader of the report could tell.
    """
    merged: dict[str, dict[str, dict]] = {}
    origin: dict[tuple[str, str], str] = {}
    for path in paths:
        for ds_name, methods in read_params(Path(path), suite).items():
            for method, settings in methods.items():
                key = (ds_name, method)
                if key in origin:
                    raise InputError(f"--params: {ds_name} {method} is set by both {origin[key]} and {Path(path).name}; "
                                     "give each method's settings once")
                origin[key] = Path(path).name
                merged.setdefault(ds_name, {})[method] = settings
    return merged


def settings_for(suite_settings: dict, overrides: dict, dataset: str, method: str) -> dict:
    """The manifest's settings of a method with tuned values laid over them."""
    return {**suite_settings, **overrides.get(dataset, {}).get(method, {})}
