"""``--tune``: pick regularization weights (and the DPS step size) on the tuning split by PSNR.

Grids are small on purpose (the manifest's ``tuning_grid``; a CPU must be able to run them). The
criterion is the fastMRI-convention PSNR of the tuning split; ties keep the first (smallest) value.
The test split is never touched here.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from medrecon.io.atomic import write_text

from .data import describe_split, load_cases
from .manifest import Dataset
from .params import TUNED_FORMAT
from .scoring import finite_or_none
from .session import Session

__all__ = ["tune_steps", "tune_suite"]


def _combos(grid: dict[str, list]) -> list[dict]:
    keys = sorted(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def tune_steps(plan: list[tuple[Dataset, list[str]]]) -> int:
    """Number of (dataset, method, setting) runs ``--tune`` makes, for the progress counter."""
    return sum(len(_combos(ds.tuning_grid[m])) for ds, methods in plan for m in methods if m in ds.tuning_grid)


def _tune_dataset(session: Session, ds: Dataset, methods: list[str]) -> tuple[dict, dict]:
    tunable = [m for m in methods if m in ds.tuning_grid]
    if not tunable:
        return {}, {}
    cases = load_cases(session.suite, ds, session.sources[ds.name], "tuning")
    best, table = {}, {}
    for method in tunable:
        tried = []
        for combo in _combos(ds.tuning_grid[method]):
            session.step(f"tune {ds.name} {method} {combo} on {describe_split(cases)} (tuning split)")
            ev = session.evaluate(cases, method, {**ds.methods[method], **combo}, ds.slice_chunk)
            score = ev.summary.get("psnr") if not ev.error else None
            tried.append({**combo, "psnr": score, "ssim": ev.summary.get("ssim"),
                          "seconds_per_slice": ev.seconds / max(1, ev.n_slices), "error": ev.error})
        ok = [t for t in tried if t["psnr"] is not None]
        if ok:
            top = max(ok, key=lambda t: t["psnr"])  # max keeps the first of equal scores
            best[method] = {k: top[k] for k in ds.tuning_grid[method]}
            session.log(f"    tuned {ds.name} {method}: {best[method]} (PSNR {top['psnr']:.2f} dB on the tuning split)")
        table[method] = tried
    return best, table


def tune_suite(session: Session, plan: list[tuple[Dataset, list[str]]], out: Path, command: str) -> dict:
    """Tune every dataset's tunable methods; writes ``out/tuned.json`` and returns its ``params``."""
    params, grids = {}, {}
    for ds, methods in plan:
        best, table = _tune_dataset(session, ds, methods)
        if best:
            params[ds.name] = best
        if table:
            grids[ds.name] = table
    doc = {"format": TUNED_FORMAT, "suite": session.suite.name, "split": "tuning",
           "criterion": "PSNR (fastMRI volume convention) on the tuning split", "device": str(session.device),
           "command": command, "params": params, "grid": grids}
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "tuned.json", json.dumps(finite_or_none(doc), indent=2, allow_nan=False) + "\n")
    session.log(f"wrote {out / 'tuned.json'}")
    return params
