"""A benchmark session: device, data root, loaded priors, progress lines, and scoring of one method."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch

from medrecon import methods as registry
from medrecon.errors import MedreconError

from .data import Case
from .manifest import Suite
from .methods import MethodRun, run_method
from .scoring import aggregate, score_volume

__all__ = ["Evaluation", "Session"]


@dataclass
class Evaluation:
    """One method on one split of one dataset: outputs, per-volume scores and the aggregate."""

    runs: list[MethodRun]
    volumes: list[dict]
    summary: dict
    seconds: float
    n_slices: int
    error: str | None = None


class Session:
    """Shared state of one ``medrecon benchmark`` run."""

    def __init__(self, suite: Suite, device: torch.device, sources: dict, progress: bool = True,
                 total_steps: int = 0, priors: dict | None = None, excerpt_info: dict | None = None) -> None:
        self.suite = suite
        self.device = device
        self.sources = sources  # dataset name -> verified file/folder or excerpt stand-in (resolved once)
        self.prior_names = dict(priors or {})
        self.excerpt_info = excerpt_info
        self.progress = progress
        self.total = total_steps
        self.done = 0
        self.t_start = time.perf_counter()
        self._priors: dict[str, object] = {}

    def prior(self, modality: str):
        """The modality's prior (``--prior``, else the shipped one; sha256-verified), loaded once."""
        if modality not in self._priors:
            from medrecon.priors import load_prior

            self._priors[modality] = load_prior(self.prior_names.get(modality), modality, self.device)
        return self._priors[modality]

    def prior_info(self) -> dict:
        return {m: {"name": p.name, "sha256": p.metadata["weights"]["sha256"]} for m, p in self._priors.items()}

    def log(self, msg: str) -> None:
        print(msg, flush=True)

    def step(self, label: str) -> None:
        """Announce the next unit of work with a ``[k/N]`` counter and the elapsed time."""
        self.done += 1
        elapsed = time.perf_counter() - self.t_start
        self.log(f"[{self.done}/{self.total}] {elapsed:6.0f} s  {label}")

    def evaluate(self, cases: list[Case], method: str, settings: dict, slice_chunk: int | None = None) -> Evaluation:
        """Run ``method`` on every case and score it; a method that fails is recorded, not fatal."""
        modality = cases[0].modality
        prior = self.prior(modality) if registry.is_learned(method) else None
        runs, vols = [], []
        n = sum(len(c.slices) for c in cases)
        try:
            for case in cases:
                run = run_method(case, method, settings, self.device, prior, self.suite.seed,
                                 self.progress and sys.stderr.isatty(), slice_chunk)
                runs.append(run)
                vols.append({"volume": case.volume, **score_volume(case.target, run.image, modality, case.slices)})
        except (MedreconError, torch.cuda.OutOfMemoryError) as exc:
            # One failing method (diverged sampler, too few calibration lines, GPU memory) must not
            # cost the other methods' results: it becomes a row with an "error".
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                msg = "CUDA out of memory (lower the method's batch_size or the dataset's slice_chunk)"
            self.log(f"    {method} FAILED: {msg}")
            return Evaluation(runs, vols, {}, sum(r.seconds for r in runs), n, error=msg)
        ev = Evaluation(runs, vols, aggregate(vols), sum(r.seconds for r in runs), n)
        s = ev.summary
        self.log(f"    {method}: PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.4f}  (fastMRI)  | per-slice PSNR "
                 f"{s['per_slice']['psnr']:.2f} dB  | {ev.seconds / n:.2f} s/slice  NFE {runs[-1].nfe}  "
                 f"peak {max(r.peak_mem_mb for r in runs):.0f} MiB")
        return ev
