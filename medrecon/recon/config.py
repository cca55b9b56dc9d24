"""Settings of one reconstruction (what ``medrecon recon`` parses its arguments into)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from medrecon import methods

__all__ = ["ReconConfig", "MRI_METHODS", "CT_METHODS", "LEARNED", "DEFAULTS", "FIELD_PARAMS", "config_for"]

# Method parameters with a field of their own in ReconConfig (the built-in methods'); any other registered
# parameter travels in ReconConfig.options.
FIELD_PARAMS = ("steps", "zeta", "cg_iters", "eta", "lam", "iters")
# The acquisition options whose explicit use ReconConfig.given records (each has no effect without --mask).
GIVEN_OPTIONS = ("accel", "center_fraction", "mask_seed")

# Derived from the one registry (medrecon/methods.py); kept for callers that import them from here.
MRI_METHODS = methods.names("mri")
CT_METHODS = methods.names("ct")
LEARNED = methods.names(learned=True)
# Defaults per method, chosen by the sweeps in benchmarks/ (see README, "Choosing the defaults"); a value
# that differs by modality is a {modality: value} dict.
DEFAULTS = {m.name: {f.name: ({"mri": f.default, **f.metadata["by_modality"]} if f.metadata["by_modality"]
                              else f.default) for f in m.param_fields()}
            for m in methods.METHODS.values() if m.param_fields()}


@dataclass
class ReconConfig:
    """One reconstruction's settings.

    Attributes:
        method: one of :data:`MRI_METHODS` or :data:`CT_METHODS`.
        prior: prior name or bundle folder (default: the shipped prior of the data's modality).
        steps, zeta, cg_iters, eta: sampler settings (``None``: the method's default).
        lam, iters: classical-method settings; MRI ``lam`` is relative to ``max |A^H y|``, CT TV ``lam``
            is in units of mu_water (the TV weight is ``lam * mu_water``).
        samples: posterior samples per slice (K); the std map needs K > 1.
        seed: sampler seed.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: rows (slice x sample) per network batch.
        autocast: bf16 autocast for the network (GPU, or a CPU with native bf16: ``cpu_has_native_bf16``).
        compile: run the network through ``torch.compile`` (``DiffusionPrior.compiled_net``; for the GPU).
        data_term: CT's data term, ``ls`` (unweighted least squares on the line integrals), ``pwls``
            (weighted by each ray's counts; needs the scan's photon count): ``recon.problems.ct_system``, or
            ``poisson`` (the pre-log likelihood, re-expanded at every step: ``recon.problems.PoissonLinearization``;
            the fast and Langevin samplers).
        mask, accel, center_fraction, mask_seed: retrospective undersampling of fully sampled k-space.
        slices: ``a:b`` slice range.
        noise_std: measurement noise (k-space std per sample); ``None``: from the file or estimated.
        progress: show progress bars.
        support: ``"auto"`` restricts learned reconstructions to where the measurement sees the image
            (MRI: the coil maps' support, docs/robustness.md); ``"none"`` leaves the whole image free.
        maps: MRI coil maps: ``"auto"`` (the file's precomputed maps if it has them, else ESPIRiT),
            ``"espirit"`` (always estimate), ``"true"`` (the maps a ``medrecon simulate mri`` file carries).
        options: settings of registered methods that have no field here (a method added in one place
            brings its own parameter names; ``recon`` makes a flag for each).
        volume: reconstruct the study's slices as one volume: the samplers move every slice through one schedule
            with TV along z at each step, the TV methods become 3-D TV (``medrecon.recon.volume``).
        z_weight: volume mode's weight along z (``None``: the measured default for the method and modality,
            :func:`medrecon.recon.volume.z_weight_for`; 0: slice by slice).
        z_solve: volume mode, the samplers with a CG data step (fast, langevin): ``"prox"`` couples the
            estimates before the data step, ``"admm"`` solves TV along z jointly with it (``"admm-carry"``: its
            variables carried from step to step; :mod:`medrecon.sampling.zcouple`); ``None``: the measured
            default (:func:`medrecon.recon.volume.z_solve_for`).
        z_rho: ``"admm"``'s penalty relative to the data term's scale (``None``: the measured default).
        slab: volume mode: slices per slab (``None``: the whole study in one pass); slabs overlap and are
            blended (``medrecon.sampling.volume``).
        given: the acquisition options the user set explicitly (``"accel"``, ``"center_fraction"``,
            ``"mask_seed"``; ``recon`` fills it from its flags). ``accel`` and ``center_fraction`` have
            defaults, so only this tells an option given for an already undersampled file (or without
            ``mask``), which then has no effect, from the default: it is reported, not silently dropped.
    """

    method: str
    prior: Optional[str] = None
    steps: Optional[int] = None
    zeta: Optional[float] = None
    cg_iters: Optional[int] = None
    eta: Optional[float] = None
    lam: Optional[float] = None
    iters: Optional[int] = None
    samples: int = 1
    seed: int = 0
    device: str = "auto"
    batch_size: Optional[int] = None
    autocast: bool = False
    compile: bool = False
    data_term: str = "ls"
    mask: Optional[str] = None
    accel: int = 4
    center_fraction: float = 0.08
    mask_seed: Optional[int] = None
    slices: Optional[str] = None
    noise_std: Optional[float] = None
    progress: bool = True
    support: str = "auto"
    maps: str = "auto"
    volume: bool = False
    z_weight: Optional[float] = None
    z_solve: Optional[str] = None
    z_rho: Optional[float] = None
    slab: Optional[int] = None
    options: dict = field(default_factory=dict)
    given: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Fail at parse time, before any file is read or batch started: an unknown method, or a setting the
        # method does not take (it used to be dropped silently).
        from medrecon.errors import InputError

        self.method_params()
        self.given = tuple(self.given)  # a list after a JSON round trip (Ray, Slurm)
        unknown = set(self.given) - set(GIVEN_OPTIONS)
        if unknown:
            raise InputError(f"ReconConfig.given names {sorted(unknown)}; expected some of {list(GIVEN_OPTIONS)}")
        from medrecon.recon.problems import CT_DATA_TERMS, POISSON_METHODS

        if self.data_term not in CT_DATA_TERMS:
            raise InputError(f"--data-term must be one of {', '.join(CT_DATA_TERMS)}, got {self.data_term!r}")
        if self.data_term == "poisson" and self.method not in POISSON_METHODS:
            raise InputError(f"--data-term poisson is re-expanded at every step by the {' and '.join(POISSON_METHODS)} "
                             f"samplers; use --data-term pwls with {self.method}")
        if self.maps not in ("auto", "espirit", "true"):
            raise InputError(f"--maps must be auto, espirit or true, got {self.maps!r}")
        # Run settings that used to fail late with a traceback, or run and give garbage (issue 23, defects 9-10).
        if not 1 <= self.samples <= 10_000:
            raise InputError(f"--samples must be between 1 and 10000, got {self.samples}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {self.batch_size}")
        for name, seed in (("--seed", self.seed), ("--mask-seed", self.mask_seed)):
            if seed is not None and not 0 <= seed < 2**63:
                raise InputError(f"{name} must be between 0 and 2^63 - 1, got {seed}")
        self._check_volume()
        if self.mask is not None:  # the acquisition model's own checks (kind, acceleration, centre)
            from medrecon.acquisition.mri import CartesianSampling

            CartesianSampling(self.mask, self.accel, self.center_fraction)

    def _check_volume(self) -> None:
        """Volume mode's settings (one-line InputErrors)."""
        import math

        from medrecon.errors import InputError
        from medrecon.sampling.zcouple import SOLVES

        for flag, v, zero_ok in (("--z-weight", self.z_weight, True), ("--z-rho", self.z_rho, False)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                  or v < 0 or (v == 0 and not zero_ok)):
                raise InputError(f"{flag} must be a finite number {'>=' if zero_ok else '>'} 0, got {v!r}")
        if self.z_solve is not None and self.z_solve not in SOLVES:
            raise InputError(f"--z-solve must be one of {', '.join(SOLVES)}, got {self.z_solve!r}")
        given = [(f, v) for f, v in (("--z-weight", self.z_weight), ("--slab", self.slab), ("--z-solve", self.z_solve),
                                     ("--z-rho", self.z_rho)) if v is not None]
        if not self.volume and given:
            raise InputError(f"{given[0][0]} acts only in volume mode; add --volume")
        if self.slab is not None and self.slab < 2:
            raise InputError(f"--slab must be at least 2 slices, got {self.slab}")
        if self.volume and self.z_weight and not methods.get(self.method).couples_slices:
            raise InputError(f"method {self.method} has no term along z (volume mode couples the learned methods, "
                             "cs-tv and tv); use --z-weight 0 or another method")

    def effective_z_weight(self, modality: str) -> float:
        """The z weight this run uses: 0 outside volume mode or for methods without a z term, else the given
        one or the measured default (:func:`medrecon.recon.volume.z_weight_for`)."""
        if not self.volume or not methods.get(self.method).couples_slices:
            return 0.0
        if self.z_weight is not None:
            return float(self.z_weight)
        from medrecon.recon.volume import z_weight_for

        return z_weight_for(self.method, modality)

    def effective_z_solve(self, modality: str) -> tuple[str, float]:
        """``(solve, rho)`` of the samplers' z coupling in this run: the given ones or the measured defaults
        (:func:`medrecon.recon.volume.z_solve_for`)."""
        from medrecon.recon.volume import z_solve_for

        solve, rho = z_solve_for(modality)
        return (self.z_solve or solve), float(self.z_rho if self.z_rho is not None else rho)

    def method_settings(self, modality: Optional[str] = None):
        """The method's effective parameters as its registered dataclass: its defaults for ``modality`` (MRI
        when None), overridden by the settings given here.

        Raises:
            InputError: a setting given that the method does not take (``--zeta`` with ``fast``), or out of range.
        """
        given = {**self.options, **{k: getattr(self, k) for k in FIELD_PARAMS}}
        return methods.get(self.method).resolve(modality or "mri", given)

    def method_params(self, modality: Optional[str] = None) -> dict:
        """:meth:`method_settings` as a dict (run records, sampler keyword arguments)."""
        return asdict(self.method_settings(modality))

    def to_dict(self) -> dict:
        return asdict(self)


def config_for(method: str, settings: dict, **kw) -> ReconConfig:
    """A ReconConfig for ``method`` from a settings dict (manifests, tuned grids): registered parameters go to
    their fields or to ``options``; other keys of ``settings`` are ignored; ``kw`` sets the other fields."""
    known = set(methods.param_names())
    fields = {k: v for k, v in settings.items() if k in FIELD_PARAMS}
    options = {k: v for k, v in settings.items() if k in known and k not in FIELD_PARAMS}
    return ReconConfig(method=method, options=options, **fields, **kw)
