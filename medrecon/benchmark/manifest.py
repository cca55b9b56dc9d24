"""Benchmark suite manifests: what data, which slices, which acquisition, which methods and settings.

A suite is a JSON (or YAML) file in ``medrecon/data/suites/`` (or any path given to ``--suite``)::

    {
      "format": "medrecon-suite/1",
      "name": "mri-4x",
      "description": "...",
      "data_root": "shared",            # "package" | "shared" | "user" | a folder relative to the manifest
      "seed": 0,                        # sampler seed
      "datasets": [{
        "name": "vsseg001-t1", "modality": "mri", "source": "volume",
        "file": {"path": "mri/vsseg001_t1_dicom", "sha256": "...", "licence": "CC BY 4.0"},
        "image_size": [160, 160],
        "split": {"test": [48, 64, 76, 88], "tuning": [54, 82]},
        "acquisition": {"mask": "random", "accel": 4, "center_fraction": 0.08, "seed": 0,
                        "coils": 8, "noise_std": 0.002},
        "methods": {"zero-filled": {}, "sense": {"iters": 30}, "dps": {"steps": 100, "zeta": 3.0}},
        "tuning_grid": {"cs-wavelet": {"lam": [0.002, 0.005, 0.01]}}
      }]
    }

``source: "kspace"`` datasets read one real multi-coil k-space file (BART cfl) inside ``file.path`` (a
folder, sha256 as for series), named by ``"kspace": {"data": "ksp", "reference": "img"}``; the acquired
samples are undersampled further (``acquisition: {"keep": 0.5, "seed": 0}`` keeps the fully sampled
centre and that fraction of the other acquired samples) and scored against the reference file, a
reconstruction of the full acquired set (a pseudo-reference), brought to the k-space's scale by one
least-squares factor against CG-SENSE of the full acquired set. Their split indexes the file's slices.

``source: "fastmri"`` datasets read every ``*.h5`` of the user's fastMRI multicoil folder instead of
simulating from a volume; their split is by volume (``{"tuning_volumes": 1}``: the first file in
sorted order tunes, the others are the test set) and their acquisition seed may be ``"filename"``
(fastMRI's validation convention ``seed = tuple(map(ord, fname))``).

Every problem is an :class:`InputError` naming the suite and the offending field, so the CLI prints
one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medrecon import methods as registry
from medrecon.errors import InputError

__all__ = [
    "BENCH_METHODS",
    "CT_BENCH_METHODS",
    "METHOD_KEYS",
    "method_keys",
    "OPTIONAL_METHODS",
    "MRI_BENCH_METHODS",
    "SUITES_DIR",
    "DataFile",
    "Dataset",
    "Suite",
    "load_suite",
    "volume_label",
    "suite_names",
]

#: Benchmark method names, from the registry (medrecon/methods.py); for CT ``cs-tv`` is TV-regularized
#: iterative reconstruction (our ``tv``).
MRI_BENCH_METHODS = registry.bench_names("mri")
CT_BENCH_METHODS = registry.bench_names("ct")
BENCH_METHODS = registry.bench_names()
#: Methods that need an external program; a suite lists them, and they are skipped where it is missing.
OPTIONAL_METHODS = tuple((m.bench_name or m.name) for m in registry.METHODS.values() if m.needs)
#: Settings a method entry may carry (the rest of ReconConfig is fixed by the suite).
#: Run settings a method entry may carry beside the method's parameters (data_term: CT only).
RUN_KEYS = ("samples", "batch_size", "data_term", "volume", "z_weight", "slab", "z_solve", "z_rho")
#: The run settings of volume mode (recon --volume / --z-weight / --slab); on a method entry they apply to its
#: volume row only (a dataset's ``"volume": {"methods": [...]}`` adds one per listed method).
VOLUME_KEYS = ("volume", "z_weight", "slab", "z_solve", "z_rho")
METHOD_KEYS = registry.param_names() + RUN_KEYS


def volume_label(method: str) -> str:
    """The row name of ``method`` run in volume mode."""
    return f"{method} (volume)"


def method_keys() -> tuple[str, ...]:
    """Settings a suite's method entry may carry: every registered parameter, plus samples, batch size and (CT)
    the data term (``ls`` or ``pwls``: recon.problems.ct_system)."""
    return registry.param_names() + RUN_KEYS
_ACQ_KEYS = {"mri": {"mask", "accel", "center_fraction", "seed", "coils", "noise_std", "trajectory", "spokes",
                     "readout"},
             "ct": {"views", "geometry", "photons", "seed", "mu_water", "scanner", "sid_mm", "sdd_mm", "detector_pitch_mm", "detectors", "detector", "scan"},
             "kspace": {"keep", "seed"}}
FORMAT = "medrecon-suite/1"
# Shipped inside the package, so `--suite NAME` works from an installed wheel as well as a checkout.
SUITES_DIR = Path(__file__).resolve().parents[1] / "data" / "suites"


@dataclass(frozen=True)
class DataFile:
    """One input file or folder: ``path`` relative to the data root, its sha256 and licence.

    ``source_slices`` optionally maps the file's slice indices to those of the original scan (used to
    check that tuning and test slices are not neighbours when the file is itself an excerpt).
    """

    path: str
    sha256: str | None
    licence: str
    source: str = ""
    source_slices: tuple[int, ...] | None = None


@dataclass
class Dataset:
    """One dataset of a suite (one modality, one acquisition protocol)."""

    name: str
    modality: str
    source: str  # "volume" | "fastmri" | "kspace"
    file: DataFile
    image_size: tuple[int, int] | None
    split: dict[str, Any]
    acquisition: dict[str, Any]
    methods: dict[str, dict[str, Any]]
    tuning_grid: dict[str, dict[str, list]] = field(default_factory=dict)
    slices: Any = "all"  # fastmri: "all", a list of indices, or {"center": n}
    max_volumes: int | None = None  # fastmri: cap on test volumes
    slice_chunk: int | None = None  # slices per reconstruction call (memory bound); None = all at once
    kspace: dict | None = None  # kspace source: {"data": name, "reference": name} inside file.path
    volume_methods: tuple[str, ...] = ()  # methods run a second time in volume mode (rows "<method> (volume)")


@dataclass
class Suite:
    """A parsed, validated suite manifest."""

    name: str
    description: str
    data_root: str
    seed: int
    datasets: list[Dataset]
    path: Path
    raw: dict = field(repr=False, default_factory=dict)


def suite_names() -> list[str]:
    """Names of the suites shipped in ``medrecon/data/suites``."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.json")) if SUITES_DIR.is_dir() else []


def _read(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read suite manifest {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse failure is one user-facing line
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"suite manifest {path.name} is not valid {path.suffix.lstrip('.') or 'JSON'}: {msg}") from None
    if not isinstance(data, dict):
        raise InputError(f"suite manifest {path.name} must hold an object at the top level")
    return data


def _resolve(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".json", ".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise InputError(f"suite manifest {p} does not exist")
        return p
    cand = SUITES_DIR / f"{name_or_path}.json"
    if cand.is_file():
        return cand
    names = ", ".join(suite_names()) or "none found"
    raise InputError(f"unknown suite {name_or_path!r}; choose from {names}, or give a manifest file")


class _Checker:
    """Field checks that raise one-line InputErrors naming the suite and the field path."""

    def __init__(self, suite: str) -> None:
        self.suite = suite

    def fail(self, where: str, msg: str) -> None:
        raise InputError(f"suite {self.suite}: {where} {msg}")

    def get(self, d: dict, key: str, where: str, types, required: bool = True, default=None):
        if key not in d or d[key] is None:
            if required:
                self.fail(f"{where}.{key}" if where else key, "is missing")
            return default
        v = d[key]
        if not isinstance(v, types) or isinstance(v, bool) and bool not in _astuple(types):
            self.fail(f"{where}.{key}" if where else key, f"must be {_typename(types)}, got {type(v).__name__}")
        return v

    def int_list(self, v, where: str) -> list[int]:
        if not isinstance(v, list) or not v or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                       for i in v):
            self.fail(where, "must be a non-empty list of slice indices (non-negative integers)")
        if len(set(v)) != len(v):
            self.fail(where, "lists a slice twice")
        return list(v)


def _astuple(t) -> tuple:
    return t if isinstance(t, tuple) else (t,)


def _typename(t) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object", bool: "true/false"}
    return " or ".join(names.get(x, x.__name__) for x in _astuple(t))


def _parse_file(c: _Checker, d: dict, where: str, source: str) -> DataFile:
    f = c.get(d, "file", where, dict, required=source == "volume", default={})
    path = c.get(f, "path", f"{where}.file", str, required=source == "volume", default="")
    sha = c.get(f, "sha256", f"{where}.file", str, required=source == "volume")
    if sha is not None and (len(sha) != 64 or any(ch not in "0123456789abcdef" for ch in sha)):
        c.fail(f"{where}.file.sha256", "must be 64 lowercase hex digits")
    lic = c.get(f, "licence", f"{where}.file", str, required=source == "volume", default="user data")
    src = c.get(f, "source_slices", f"{where}.file", list, required=False)
    if src is not None:
        src = tuple(c.int_list(src, f"{where}.file.source_slices"))
    return DataFile(path, sha, lic, str(f.get("source", "")), src)


def _check_split(c: _Checker, split: dict, where: str, df: DataFile) -> dict:
    test = c.int_list(split.get("test"), f"{where}.split.test")
    tuning = c.int_list(split["tuning"], f"{where}.split.tuning") if split.get("tuning") is not None else []
    src = df.source_slices

    def orig(i: int) -> int:
        if src is None:
            return i
        if i >= len(src):
            c.fail(f"{where}.split", f"uses slice {i} but file.source_slices lists only {len(src)} slices")
        return src[i]

    for t in tuning:
        for s in test:
            if abs(orig(t) - orig(s)) <= 1:
                c.fail(f"{where}.split", f"tuning slice {t} is the same as or adjacent to test slice {s}; "
                       "tuning and test slices must be different and non-adjacent")
    return {"test": test, "tuning": tuning}


def _setting_ok(key: str, v) -> bool:
    """A suite setting is a positive number; a method parameter whose registered range starts at 0 may also be 0
    (eta 0: deterministic DDIM; final_dc 0: off; geometric 0: DDIM's level spacing). Volume mode: ``volume`` is
    true, ``z_weight`` >= 0, ``slab`` a whole number >= 2, ``z_solve`` prox, admm or admm-carry, ``z_rho`` > 0."""
    if key == "volume":
        return v is True
    if key == "z_solve":
        from medrecon.sampling.zcouple import SOLVES

        return v in SOLVES
    if key in ("z_weight", "slab") and not isinstance(v, bool) and isinstance(v, (int, float)):
        return v >= 0 if key == "z_weight" else (v == int(v) and v >= 2)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        zero_ok = registry.param_field(key).metadata.get("lo") == 0
    except KeyError:  # a benchmark setting (samples), not a method parameter
        zero_ok = False
    return v > 0 or (zero_ok and v == 0)


def _check_methods(c: _Checker, methods: dict, where: str, modality: str) -> dict:
    allowed = registry.bench_names(modality)
    keys = method_keys()
    if not methods:
        c.fail(f"{where}.methods", "lists no methods")
    out = {}
    for name, settings in methods.items():
        if name not in allowed:
            c.fail(f"{where}.methods", f"has {name!r}, which does not apply to {modality.upper()} "
                   f"(choose from {', '.join(allowed)})")
        if not isinstance(settings, dict):
            c.fail(f"{where}.methods.{name}", "must be an object of settings")
        bad = sorted(set(settings) - set(keys))
        if bad:
            c.fail(f"{where}.methods.{name}", f"has unknown setting(s) {', '.join(bad)} "
                   f"(allowed: {', '.join(keys)})")
        for k, v in settings.items():
            if k == "data_term":
                from medrecon.recon.problems import CT_DATA_TERMS

                if modality != "ct" or v not in CT_DATA_TERMS:
                    c.fail(f"{where}.methods.{name}.{k}", f"must be one of {CT_DATA_TERMS} (CT only), got {v!r}")
                from medrecon.recon.problems import POISSON_METHODS

                if v == "poisson" and name not in POISSON_METHODS:
                    c.fail(f"{where}.methods.{name}.{k}", f"poisson is for the {' and '.join(POISSON_METHODS)} samplers")
            elif not _setting_ok(k, v):
                c.fail(f"{where}.methods.{name}.{k}", f"must be a positive number, got {v!r}")
        out[name] = dict(settings)
    return out


def _check_grid(c: _Checker, grid: dict, where: str, methods: dict) -> dict:
    out = {}
    for name, params in grid.items():
        if name not in methods:
            c.fail(f"{where}.tuning_grid", f"tunes {name!r}, which is not among the dataset's methods")
        if not isinstance(params, dict) or not params:
            c.fail(f"{where}.tuning_grid.{name}", "must map a setting to a list of values")
        for k, vals in params.items():
            if k not in method_keys():
                c.fail(f"{where}.tuning_grid.{name}", f"tunes unknown setting {k!r}")
            if not isinstance(vals, list) or not vals or not all(_setting_ok(k, v) for v in vals):
                c.fail(f"{where}.tuning_grid.{name}.{k}", "must be a non-empty list of positive numbers"
                       + (" (or 0)" if k == "eta" else ""))
        out[name] = {k: list(v) for k, v in params.items()}
    return out


def _check_acquisition(c: _Checker, acq: dict, where: str, modality: str) -> dict:
    bad = sorted(set(acq) - _ACQ_KEYS[modality])
    if bad:
        c.fail(f"{where}.acquisition", f"has unknown key(s) {', '.join(bad)} "
               f"(allowed for {modality.upper()}: {', '.join(sorted(_ACQ_KEYS[modality]))})")
    if modality == "kspace":
        keep = c.get(acq, "keep", f"{where}.acquisition", (int, float))
        if not 0 < keep <= 1:
            c.fail(f"{where}.acquisition.keep", "must lie in (0, 1]")
        c.get(acq, "seed", f"{where}.acquisition", int, required=False)
    elif modality == "mri" and "trajectory" in acq:  # non-Cartesian (issue 20)
        from medrecon.acquisition.noncart import TRAJECTORIES

        if c.get(acq, "trajectory", f"{where}.acquisition", str) not in TRAJECTORIES:
            c.fail(f"{where}.acquisition.trajectory", f"must be one of {', '.join(TRAJECTORIES)}")
        cart = sorted({"mask", "accel", "center_fraction"} & set(acq))
        if cart:
            c.fail(f"{where}.acquisition", f"{', '.join(cart)} describe Cartesian masks; a trajectory has spokes")
        if c.get(acq, "spokes", f"{where}.acquisition", int) < 1:
            c.fail(f"{where}.acquisition.spokes", "must be at least 1")
        c.get(acq, "readout", f"{where}.acquisition", int, required=False)
        c.get(acq, "seed", f"{where}.acquisition", int, required=False)
        c.get(acq, "coils", f"{where}.acquisition", int, required=False)
        c.get(acq, "noise_std", f"{where}.acquisition", (int, float), required=False)
    elif modality == "mri":
        from operators.masks import MASK_KINDS

        if c.get(acq, "mask", f"{where}.acquisition", str) not in MASK_KINDS:
            c.fail(f"{where}.acquisition.mask", f"must be one of {', '.join(MASK_KINDS)}")
        c.get(acq, "accel", f"{where}.acquisition", int)
        cf = c.get(acq, "center_fraction", f"{where}.acquisition", (int, float))
        if not 0 < cf < 1:
            c.fail(f"{where}.acquisition.center_fraction", "must lie in (0, 1)")
        seed = acq.get("seed", 0)
        if not (isinstance(seed, int) or seed == "filename"):
            c.fail(f"{where}.acquisition.seed", "must be an integer or \"filename\"")
        c.get(acq, "coils", f"{where}.acquisition", int, required=False)
        c.get(acq, "noise_std", f"{where}.acquisition", (int, float), required=False)
    else:
        c.get(acq, "views", f"{where}.acquisition", int)
        if acq.get("geometry", "parallel") not in ("parallel", "fan"):
            c.fail(f"{where}.acquisition.geometry", "must be \"parallel\" or \"fan\"")
        c.get(acq, "photons", f"{where}.acquisition", (int, float), required=False)
        c.get(acq, "seed", f"{where}.acquisition", int, required=False)
    return dict(acq)


def _parse_dataset(c: _Checker, d: Any, i: int, names: set) -> Dataset:
    where = f"datasets[{i}]"
    if not isinstance(d, dict):
        c.fail(where, "must be an object")
    name = c.get(d, "name", where, str)
    if name in names:
        c.fail(f"{where}.name", f"{name!r} is used twice")
    names.add(name)
    modality = c.get(d, "modality", where, str)
    if modality not in ("mri", "ct"):
        c.fail(f"{where}.modality", "must be \"mri\" or \"ct\"")
    source = d.get("source", "volume")
    if source not in ("volume", "fastmri", "kspace") or source != "volume" and modality != "mri":
        c.fail(f"{where}.source", "must be \"volume\" (or \"fastmri\" or \"kspace\" for MRI)")
    df = _parse_file(c, d, where, "volume" if source == "kspace" else source)
    ks = None
    if source == "kspace":
        ks = c.get(d, "kspace", where, dict)
        for key in ("data", "reference"):
            name_ = c.get(ks, key, f"{where}.kspace", str)
            if "/" in name_ or "\\" in name_ or name_.startswith("."):
                c.fail(f"{where}.kspace.{key}", "must be a file name inside file.path")
    size = c.get(d, "image_size", where, list, required=source == "volume")
    if size is not None and (len(size) != 2 or not all(isinstance(s, int) and s >= 16 for s in size)):
        c.fail(f"{where}.image_size", "must be [height, width] with each at least 16")
    split = c.get(d, "split", where, dict)
    if source in ("volume", "kspace"):
        split = _check_split(c, split, where, df)
    elif not isinstance(split.get("tuning_volumes", 0), int) or split.get("tuning_volumes", 0) < 0:
        c.fail(f"{where}.split.tuning_volumes", "must be a non-negative integer")
    acq = _check_acquisition(c, c.get(d, "acquisition", where, dict), where, "kspace" if source == "kspace" else modality)
    methods = _check_methods(c, c.get(d, "methods", where, dict), where, modality)
    grid = _check_grid(c, c.get(d, "tuning_grid", where, dict, required=False, default={}), where, methods)
    chunk = c.get(d, "slice_chunk", where, int, required=False)
    vol = c.get(d, "volume", where, dict, required=False, default={})
    vmethods = vol.get("methods", [])
    if not isinstance(vmethods, list) or not all(isinstance(m, str) and m in methods for m in vmethods):
        c.fail(f"{where}.volume.methods", "must list methods of this dataset")
    if vmethods and source != "volume":
        c.fail(f"{where}.volume", "applies to datasets simulated from a volume")
    for s_name in ("test", "tuning"):
        idx = split.get(s_name) or []
        if vmethods and idx and any(b != a + 1 for a, b in zip(idx, idx[1:])):
            c.fail(f"{where}.split.{s_name}", "must be contiguous, increasing slices for volume mode")
    slices = d.get("slices", "all")
    if not (slices == "all" or isinstance(slices, list) and c.int_list(slices, f"{where}.slices")
            or isinstance(slices, dict) and isinstance(slices.get("center"), int) and slices["center"] > 0):
        c.fail(f"{where}.slices", "must be \"all\", a list of slice indices or {\"center\": N}")
    return Dataset(name, modality, source, df, tuple(size) if size else None, split, acq, methods, grid,
                   slices, c.get(d, "max_volumes", where, int, required=False), chunk, ks, tuple(vmethods))


def load_suite(name_or_path: str | Path) -> Suite:
    """Load and validate a suite by name (``medrecon/data/suites/NAME.json``) or manifest path.

    Raises:
        InputError: unknown suite, unreadable or invalid manifest (one line naming the field).
    """
    path = _resolve(str(name_or_path))
    raw = _read(path)
    c = _Checker(str(raw.get("name") or path.stem))
    if raw.get("format") != FORMAT:
        c.fail("format", f"must be {FORMAT!r}, got {raw.get('format')!r}")
    name = c.get(raw, "name", "", str)
    datasets = c.get(raw, "datasets", "", list)
    if not datasets:
        c.fail("datasets", "is empty")
    names: set = set()
    parsed = [_parse_dataset(c, d, i, names) for i, d in enumerate(datasets)]
    root = c.get(raw, "data_root", "", str, required=False, default="shared")
    seed = c.get(raw, "seed", "", int, required=False, default=0)
    return Suite(name, str(raw.get("description", "")), root, seed, parsed, path.resolve(), raw)
