"""The per-study reconstructor every executor runs: one study in, its outputs on disk, one result out.

It is the only place a batch reconstructs anything, so a study gives the same output whether the
local loop, a shard of a Slurm array or a Ray actor runs it, and whether it is a first try or a
retry after a worker died:

- the prior is loaded (and sha256-checked) once per worker and reused for every study it runs;
- the sampler seed comes from the study (:func:`~medrecon.scale.studies.study_seed`), never from
  the order or the place studies happen to run in;
- outputs and the run record are written atomically by the pipeline, the run record last, so an
  output with a run record is complete;
- any failure is caught and returned as one line, so one broken study never stops a worker; an
  input that is a symbolic link to nothing fails as "broken symbolic link" (its target, a path, is
  never shown).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from medrecon.errors import InputError, MedreconError
from medrecon.recon.config import ReconConfig

from .studies import Study, broken_link, study_seed

__all__ = ["StudyReconstructor", "StudyResult", "one_line"]

_MAX_REASON = 300


@dataclass
class StudyResult:
    """What a worker reports for one study.

    Attributes:
        name: the study (input file name).
        ok: outputs and run record were written.
        reason: one-line failure reason (``None`` on success); never a folder path.
        seed: the sampler seed the study ran with.
        seconds: wall time in the worker.
        attempt: which try this was (1 = first).
        worker: where it ran: host, process id, device, and (under Ray) the GPU ids the actor holds.
    """

    name: str
    ok: bool
    reason: Optional[str]
    seed: int
    seconds: float
    attempt: int = 1
    worker: dict[str, Any] = field(default_factory=dict)


def one_line(exc: BaseException, *folders: Path) -> str:
    """A one-line, path-free failure reason for the manifest and the console.

    Library errors are already written for users; anything else (an h5py or CUDA error) keeps its
    type name so the cause is recognisable. Folder paths are cut out: they may name a patient.
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if not isinstance(exc, MedreconError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    for folder in folders:
        for form in {str(folder), str(folder.resolve())}:
            if form not in ("", "."):
                text = text.replace(form + os.sep, "").replace(form, "")
    return text[:_MAX_REASON]


class StudyReconstructor:
    """Reconstruct studies with one configuration, keeping loaded priors for the worker's lifetime.

    Args:
        cfg: the batch's settings; ``cfg.seed`` is the batch seed each study's seed derives from.
        fmt: output format (``h5``, ``nifti``, ``dicom``, ``png``; ``None`` = h5).
        like: DICOM whose patient/study modules DICOM outputs copy.
        command: the command line recorded in each run record (the driver's, not a worker's).
        worker: facts about this worker reported with each result (e.g. Ray's GPU ids).
    """

    def __init__(self, cfg: ReconConfig, fmt: Optional[str] = None, like: Optional[Path] = None,
                 command: Optional[list] = None, worker: Optional[dict] = None) -> None:
        self.cfg = cfg
        self.fmt = fmt
        self.like = like
        self.command = list(command) if command else ["medrecon", "recon"]
        self.worker = {"host": socket.gethostname(), "pid": os.getpid(), **(worker or {})}
        if os.environ.get("SLURM_JOB_ID"):  # under Slurm (sbatch arrays, submitit): which job and task
            self.worker["slurm_job"] = os.environ["SLURM_JOB_ID"]
            self.worker["slurm_array_task"] = os.environ.get("SLURM_ARRAY_TASK_ID")
        self._priors: dict[tuple, Any] = {}

    def load_prior(self, name: Optional[str], modality: str, device) -> Any:
        """:func:`medrecon.priors.load_prior` with a per-worker cache (one load per prior and device)."""
        key = (name, modality, str(device))
        if key not in self._priors:
            from medrecon.priors import load_prior

            self._priors[key] = load_prior(name, modality, device)
        return self._priors[key]

    def config_for(self, study: Study) -> ReconConfig:
        """The study's settings: the batch's, with the study's own sampler seed.

        The mask seed stays the batch's (``--mask-seed``, else ``--seed``), so a retrospective mask is the
        same for every study of a batch (docs/design.md, section 3; it once followed the per-study seed).
        """
        mask_seed = self.cfg.mask_seed if self.cfg.mask_seed is not None else self.cfg.seed
        return replace(self.cfg, seed=study_seed(study.name, self.cfg.seed), mask_seed=mask_seed)

    def __call__(self, study: Study, attempt: int = 1) -> StudyResult:
        """Reconstruct one study; never raises for a broken study (only for ``KeyboardInterrupt``)."""
        from medrecon.app.pipeline import reconstruct_file

        cfg = self.config_for(study)
        t0 = time.perf_counter()
        worker = dict(self.worker)
        try:
            files = [study.input]
            if not (study.input.exists() or study.input.is_symlink()):  # a BART pair: named without its suffixes
                files += [Path(f"{study.input}.cfl"), Path(f"{study.input}.hdr")]
            if any(broken_link(f) for f in files):  # the target is a path: never part of the reason
                raise InputError("broken symbolic link: the file it points to does not exist")
            res = reconstruct_file(study.input, study.output, cfg, self.fmt, self.like, command=self.command,
                                   load_prior=self.load_prior)
            worker["device"] = res.info.get("device")
            return StudyResult(study.name, True, None, cfg.seed, time.perf_counter() - t0, attempt, worker)
        except Exception as exc:  # noqa: BLE001 - a broken study is reported, and the worker goes on
            reason = one_line(exc, study.input.parent, study.output.parent)
            return StudyResult(study.name, False, reason, cfg.seed, time.perf_counter() - t0, attempt, worker)
