"""The method registry: which reconstruction methods exist, where they apply, and their parameters.

Every place that lists methods reads this module: ``recon``'s choices and help, config validation,
the benchmark's method lists and manifest keys, and ``medrecon methods``. A method's parameters are a
dataclass with one default each (a default may differ by modality, declared in the same field).
See docs/design.md, section 6.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Callable, Mapping, Optional

from medrecon.errors import InputError
from medrecon.registries import Registry

__all__ = ["MethodSpec", "register", "get", "names", "is_learned", "bench_names", "param_names", "param_field",
           "describe", "METHODS"]

MODALITIES = ("mri", "ct")


def _p(default: Any, help: str, lo: Optional[float] = None, hi: Optional[float] = None, **by_modality: Any) -> Any:
    """A parameter field: ``default`` (or ``by_modality[m]`` for modality ``m``), a help line and the closed range
    ``[lo, hi]`` a given value must lie in (checked by :meth:`MethodSpec.resolve`; values must be finite)."""
    return field(default=default, metadata={"help": help, "by_modality": by_modality, "lo": lo, "hi": hi})


def _regularized(name: str, lam: float, lam_help: str, iters_help: str = "iterations") -> type:
    """The settings of a regularized classical method: a weight ``lam`` and an iteration count."""
    return make_dataclass(name, [("lam", float, _p(lam, lam_help, lo=0.0, hi=1e6)),
                                 ("iters", int, _p(100, iters_help, lo=1, hi=100_000))], frozen=True)


@dataclass(frozen=True)
class NoParams:
    """A method without settings."""


@dataclass(frozen=True)
class SenseParams:
    iters: int = _p(30, "CG iterations", lo=1, hi=100_000)


CsWaveletParams = _regularized("CsWaveletParams", 0.005, "l1-wavelet weight relative to max|A^H y|", "FISTA iterations")
CsTvParams = _regularized("CsTvParams", 0.002, "TV weight relative to max|A^H y|")
BartPicsParams = _regularized("BartPicsParams", 0.005, "l1-wavelet weight of `bart pics -R W`")
# 1.0 by benchmarks/sweeps/ct_tv_lam_2026-11-27.txt (0.01 barely regularized).
TvParams = _regularized("TvParams", 1.0, "TV weight in units of mu_water")

def _final_dc() -> Any:
    """The ``final_dc`` setting every learned method takes (sampling/consistency.py)."""
    return _p(0, "CG iterations of a final exact data-consistency step on each sample (0 = off; stops at the noise "
              "level)", lo=0, hi=1000)


# A prior's schedule has at most this many timesteps (the shipped ones: 1000); more steps cannot be strided.
MAX_STEPS = 1000


@dataclass(frozen=True)
class DpsParams:
    steps: int = _p(1000, "sampler steps (1000 = the paper's schedule; fewer are strided)", lo=1, hi=MAX_STEPS)
    zeta: float = _p(3.0, "step size on ||y - A x0||", lo=0.0, hi=1e6, ct=10.0)
    # Applied by sampling.posterior_sample after the chain, not by the chain (sampling/consistency.py).
    final_dc: int = _final_dc()


@dataclass(frozen=True)
class FastParams:
    steps: int = _p(50, "sampler steps", lo=1, hi=MAX_STEPS)
    # CT's normal operator is far worse conditioned than SENSE's: 5 CG steps leave high-frequency range-space
    # error that the prior fills with invented structure; 20 chosen on ct-60's tuning split (5/10/20/40:
    # 33.47/35.08/35.28/35.28 dB, benchmarks/results/tuning_cpu_2026-12-04). MRI: 20 amplified noise at 8x.
    cg_iters: int = _p(5, "CG iterations per step (data consistency)", lo=1, hi=10_000, ct=20)
    eta: float = _p(0.85, "DDIM stochasticity (0 deterministic .. 1 ancestral)", lo=0.0, hi=1.0)
    # In-plane TV on each step's estimate (sampling/tv2d.py). 0.3 by the tuning slices of mri-4x, mri-8x and ct-60
    # (0 / 0.1 / 0.3 / 1: 27.88 / 28.11 / 28.18 / 27.91, 22.79 / 23.05 / 23.22 / 23.25, 35.65 / 36.00 / 36.03 / 35.36 dB;
    # benchmarks/results/tv_cpu_2026-12-08/); 8x's 1.0 is 0.03 dB ahead with a lower SSIM, so one value serves all.
    tv: float = _p(0.3, "in-plane TV on each step's clean-image estimate, in units of its error std (0 = off)",
                   lo=0.0, hi=100.0)
    final_dc: int = _final_dc()


@dataclass(frozen=True)
class DapsParams:
    steps: int = _p(50, "annealing levels", lo=1, hi=MAX_STEPS)
    ode_steps: int = _p(2, "DDIM (probability-flow ODE) steps of the x0 estimate per level", lo=1, hi=100)
    # 100 by mri-4x's tuning slices (20 / 50 / 100: 29.55 / 30.47 / 30.73 dB at 50 levels, one ODE step, lr 1.5)
    langevin: int = _p(100, "Langevin steps on x0 per level (operator applications, no network)", lo=1, hi=10_000)
    # 1.5 by mri-4x's tuning slices (0.5: 29.44 dB, 1.5: 30.53 dB at 50 levels; benchmarks/sweeps/samplers_2026-12-06)
    lr: float = _p(1.5, "Langevin step relative to the target's curvature bound (stable below 2)", lo=1e-6, hi=1.99)
    lr_min_ratio: float = _p(0.01, "the Langevin step's final fraction of lr (linear decay over the levels)",
                             lo=1e-6, hi=1.0)
    final_dc: int = _final_dc()


@dataclass(frozen=True)
class LangevinParams:
    # 100 by the tuning slices of mri-4x, mri-8x and ct-60 (25/50/100 levels; benchmarks/sweeps/samplers_2026-12-06)
    steps: int = _p(100, "noise levels of the annealed schedule (geometric in sigma)", lo=1, hi=MAX_STEPS)
    inner: int = _p(1, "preconditioned Langevin steps per level (one network evaluation each)", lo=1, hi=100)
    step: float = _p(1.0, "preconditioned step in (0, 1]; 1 draws the Gaussian approximation exactly",
                     lo=1e-3, hi=1.0)
    cg_iters: int = _p(5, "CG iterations applying the preconditioner per step", lo=1, hi=10_000, ct=20)
    geometric: int = _p(1, "1: levels evenly spaced in log sigma (annealed Langevin); 0: DDIM's uniform stride in t",
                        lo=0, hi=1)
    # 0.1 by the tuning slices at each suite's tuned setting (0 / 0.1 / 0.3 / 1: mri-4x 31.84 / 31.96 / 31.65 / 30.43,
    # mri-8x 23.71 / 24.11 / 24.22 / 24.02, ct-60 37.21 / 37.45 / 37.22 / 35.57 dB; tv_cpu_2026-12-08/langevin-tuning/).
    tv: float = _p(0.1, "in-plane TV on each step's denoised estimate, in units of its error std (0 = off)",
                   lo=0.0, hi=100.0)
    final_dc: int = _final_dc()


@dataclass(frozen=True)
class MethodSpec:
    """One reconstruction method.

    Attributes:
        name: the ``--method`` value.
        modalities: where it applies (``mri``, ``ct``).
        learned: needs a diffusion prior.
        params: the dataclass of its settings (frozen; defaults are the library's defaults).
        summary: one line for ``medrecon methods`` and ``recon --help``.
        bench_name: the benchmark's name for it where that differs (CT ``tv`` is the suites' ``cs-tv``).
        needs: an external program it calls (skipped by the benchmark where missing).
        run: classical methods, per modality: ``run[modality](data, params) -> image``. ``data`` is a
            :class:`medrecon.recon.context.MriData` (masked k-space ``(S, C, H, W)``, mask, lazily estimated
            coil maps and operator) or :class:`~medrecon.recon.context.CtData` (sinogram ``(S, views,
            detectors)``, projector, mu_water); ``params`` is an instance of ``params``. It returns the MRI
            magnitude ``(S, H, W)`` or the CT attenuation ``mu`` ``(S, H, W)`` as a tensor.
        demo: shown by ``medrecon demo`` (its figure has room for four or five methods per modality).
        z_term: volume mode can couple its slices along z (``--z-weight``): every learned method (the samplers'
            z coupling, medrecon/sampling/zcouple.py) and the TV methods (3-D TV); the others reconstruct a
            volume slice by slice.
        sampler: learned methods: the chain ``sampler(prior, problem, generator=, progress=, **params) ->
            (x0, nfe)`` that :func:`medrecon.sampling.posterior_sample` runs (the problem is built by the
            recon layer, the same for every sampler).
    """

    name: str
    modalities: tuple[str, ...]
    learned: bool
    params: type
    summary: str
    bench_name: Optional[str] = None
    needs: Optional[str] = None
    run: Mapping[str, Callable] = field(default_factory=dict)
    sampler: Optional[Callable] = None
    demo: bool = False
    z_term: bool = False

    @property
    def couples_slices(self) -> bool:
        """Whether volume mode's ``--z-weight`` acts on this method."""
        return self.learned or self.z_term

    def runner(self, modality: str) -> Callable:
        """The classical ``run`` function for ``modality``."""
        if modality not in self.run:
            raise InputError(f"method {self.name} does not apply to {modality.upper()} data")
        return self.run[modality]

    def param_fields(self) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(self.params)

    def defaults(self, modality: str) -> dict[str, Any]:
        """``{parameter: default}`` for ``modality``."""
        return {f.name: f.metadata["by_modality"].get(modality, f.default) for f in self.param_fields()}

    def resolve(self, modality: str, given: Optional[dict[str, Any]] = None):
        """The parameters for ``modality``: defaults, overridden by ``given`` (``None`` values ignored).

        Raises:
            InputError: a given parameter the method does not take (one line, naming the ones it does), or a
                value that is not finite or outside the parameter's range (``--steps 0``, ``--lam nan``,
                ``--eta 5``): such values used to run and give silent garbage.
        """
        given = {k: v for k, v in (given or {}).items() if v is not None}
        fields = {f.name: f for f in self.param_fields()}
        extra = sorted(set(given) - set(fields))
        if extra:
            takes = ", ".join(sorted(fields)) or "no settings"
            opts = ", ".join("--" + k.replace("_", "-") for k in extra)
            raise InputError(f"{opts} does not apply to method {self.name} (it takes: {takes})")
        for k, v in given.items():
            _check_value(self.name, fields[k], v)
        return self.params(**{**self.defaults(modality), **given})


def _check_value(method: str, f: dataclasses.Field, v: Any) -> None:
    """A given setting is a finite number of the field's kind inside its ``[lo, hi]`` (one-line InputError)."""
    flag = "--" + f.name.replace("_", "-")
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if kind in ("int", "float"):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{flag} must be a finite number, got {v!r}")
        if kind == "int" and v != int(v):
            raise InputError(f"{flag} must be a whole number, got {v!r}")
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"between {lo:g} and {hi:g}" if lo is not None and hi is not None else \
                f"at least {lo:g}" if lo is not None else f"at most {hi:g}"
            raise InputError(f"{flag} must be {rng} for method {method}, got {v!r}")


METHODS: Registry[MethodSpec] = Registry("method")


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method (a name may be registered once). Returns ``spec``."""
    if not spec.modalities or not set(spec.modalities) <= set(MODALITIES):
        raise ValueError(f"method {spec.name!r}: modalities must be a non-empty subset of {MODALITIES}")
    if not dataclasses.is_dataclass(spec.params):
        raise ValueError(f"method {spec.name!r}: params must be a dataclass")
    if spec.learned and spec.sampler is None:
        raise ValueError(f"method {spec.name!r}: a learned method needs a sampler chain")
    if not spec.learned and set(spec.run) != set(spec.modalities):
        raise ValueError(f"method {spec.name!r}: a classical method needs a run function for each of its "
                         f"modalities {spec.modalities}")
    return METHODS.add(spec.name, spec)


def get(name: str) -> MethodSpec:
    """The registered method ``name`` (InputError listing the methods otherwise)."""
    return METHODS.pick(name)


def is_learned(name: str) -> bool:
    """Whether ``name`` (a method or benchmark name) is a registered learned method."""
    m = METHODS.get(name)
    return bool(m and m.learned)


def names(modality: Optional[str] = None, learned: Optional[bool] = None, demo: Optional[bool] = None) -> tuple[str, ...]:
    """Registered method names in registration order, optionally for one modality / learned or not / in the demo."""
    return tuple(m.name for m in METHODS.values()
                 if (modality is None or modality in m.modalities) and (learned is None or m.learned == learned)
                 and (demo is None or m.demo == demo))


def bench_names(modality: Optional[str] = None) -> tuple[str, ...]:
    """The benchmark's method names (``bench_name`` where set), without repeats, in registration order."""
    out: list[str] = []
    for m in METHODS.values():
        if modality is not None and modality not in m.modalities:
            continue
        n = m.bench_name or m.name
        if n not in out:
            out.append(n)
    return tuple(out)


def param_names() -> tuple[str, ...]:
    """Every parameter any method takes, in first-registered order."""
    out: list[str] = []
    for m in METHODS.values():
        for f in m.param_fields():
            if f.name not in out:
                out.append(f.name)
    return tuple(out)


def param_field(name: str) -> dataclasses.Field:
    """The first registered parameter field called ``name`` (its type and help); KeyError if none."""
    for m in METHODS.values():
        for f in m.param_fields():
            if f.name == name:
                return f
    raise KeyError(name)


def describe() -> list[dict[str, Any]]:
    """The registry as JSON-ready rows (``medrecon methods --json``)."""
    rows = []
    for m in METHODS.values():
        params = []
        for f in m.param_fields():
            d = {"name": f.name, "type": f.type if isinstance(f.type, str) else f.type.__name__,
                 "default": f.default, "help": f.metadata["help"]}
            if f.metadata["by_modality"]:
                d["default_by_modality"] = dict(f.metadata["by_modality"])
            if f.metadata.get("lo") is not None or f.metadata.get("hi") is not None:
                d["range"] = [f.metadata.get("lo"), f.metadata.get("hi")]
            params.append(d)
        rows.append({"name": m.name, "modalities": list(m.modalities), "learned": m.learned, "demo": m.demo,
                     "summary": m.summary,
                     "benchmark_name": m.bench_name or m.name, "needs": m.needs, "params": params})
    return rows


# The built-in methods' run functions. Imports are local so that listing the registry (`medrecon methods`,
# `recon --help`) does not load the solvers.

def _zero_filled(d, p):
    return d.zero_filled()  # Cartesian: RSS of the zero-filled coil images; non-Cartesian: gridding


def _sense(d, p: SenseParams):
    from medrecon.baselines import cg_sense

    return cg_sense(d.A, d.kspace, iters=p.iters, progress=d.progress).abs()


def _relative_lam(d, p) -> float:
    """The CS methods' ``lam`` is relative to ``max |A^H y|``, so one value serves any data scale."""
    return p.lam * d.A.adjoint(d.kspace).abs().amax().item()


def _cs_wavelet(d, p):
    from medrecon.baselines import cs_wavelet

    return cs_wavelet(d.A, d.kspace, _relative_lam(d, p), iters=p.iters, progress=d.progress).abs()


def _cs_tv(d, p):
    from medrecon.baselines import cs_tv

    lam = _relative_lam(d, p)
    return cs_tv(d.A, d.kspace, lam, iters=p.iters, progress=d.progress, z_lam=lam * d.z_weight).abs()


def _bart_pics(d, p: BartPicsParams):
    from medrecon.baselines.bart import bart_pics

    return bart_pics(d.kspace, d.maps, p.lam, p.iters, trajectory=getattr(d, "trajectory", None)).abs()


def _fbp(d, p):
    return d.A.fbp(d.sinogram)


def _tv(d, p: TvParams):
    from medrecon.baselines import tv_iterative

    A, y = d.system()  # (A, y), or PWLS's weighted pair (--data-term pwls): PWLS-TV
    lam = p.lam * d.mu_water
    return tv_iterative(A, y, lam, iters=p.iters, progress=d.progress, z_lam=lam * d.z_weight)


def _dps_chain(*args, **kwargs):
    from medrecon.sampling.dps import dps_chain

    return dps_chain(*args, **kwargs)


def _fast_chain(*args, **kwargs):
    from medrecon.sampling.fast import fast_chain

    return fast_chain(*args, **kwargs)


def _daps_chain(*args, **kwargs):
    from medrecon.sampling.daps import daps_chain

    return daps_chain(*args, **kwargs)


def _langevin_chain(*args, **kwargs):
    from medrecon.sampling.langevin import langevin_chain

    return langevin_chain(*args, **kwargs)


for _spec in (
    MethodSpec("zero-filled", ("mri",), False, NoParams,
               "root-sum-of-squares of the zero-filled coil images (non-Cartesian: gridding with density compensation)",
               run={"mri": _zero_filled}, demo=True),
    MethodSpec("sense", ("mri",), False, SenseParams, "CG-SENSE, unregularized least squares with ESPIRiT maps",
               run={"mri": _sense}, demo=True),
    MethodSpec("cs-wavelet", ("mri",), False, CsWaveletParams, "compressed sensing, l1-wavelet (FISTA)",
               run={"mri": _cs_wavelet}, demo=True),
    MethodSpec("cs-tv", ("mri",), False, CsTvParams, "compressed sensing, total variation", run={"mri": _cs_tv},
               z_term=True),
    MethodSpec("bart-pics", ("mri",), False, BartPicsParams, "BART `pics` l1-wavelet (needs the bart binary)",
               needs="bart", run={"mri": _bart_pics}),
    MethodSpec("fbp", ("ct",), False, NoParams, "filtered back-projection", run={"ct": _fbp}, demo=True),
    MethodSpec("tv", ("ct",), False, TvParams, "TV-regularized iterative reconstruction", bench_name="cs-tv",
               run={"ct": _tv}, demo=True, z_term=True),
    MethodSpec("dps", ("mri", "ct"), True, DpsParams, "diffusion posterior sampling (Chung et al., ICLR 2023)",
               sampler=_dps_chain, demo=True),
    MethodSpec("fast", ("mri", "ct"), True, FastParams,
               "fast diffusion sampler: DDIM steps with CG data consistency on x0 (DDS-style)", sampler=_fast_chain,
               demo=True),
    MethodSpec("daps", ("mri", "ct"), True, DapsParams,
               "decoupled annealing posterior sampling: ODE x0 estimate, Langevin on x0, re-noise (Zhang et al., "
               "CVPR 2025)", sampler=_daps_chain),
    MethodSpec("langevin", ("mri", "ct"), True, LangevinParams,
               "preconditioned posterior Langevin over the diffused prior (pULA, Blumenthal et al. 2025)",
               sampler=_langevin_chain, demo=True),
):
    register(_spec)
