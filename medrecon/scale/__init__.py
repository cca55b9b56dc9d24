"""Scale-out: reconstruct many studies on existing engines (local, ``--shard K/N``, Ray, Slurm).

One per-study reconstructor (:class:`StudyReconstructor`) does all the work; executors only decide
where it runs, and the output folder's ``manifest.json`` (:class:`Manifest`) records every study's
status so a batch resumes, retries its failures, and never drops a study silently. See
``docs/scaling.md`` for the commands on one GPU, one multi-GPU machine, a Ray cluster and Slurm.
"""

from .manifest import Manifest
from .run import EXECUTORS, BatchSummary, ScaleOptions, run_studies
from .studies import Study, list_studies, parse_shard, shard, study_seed
from .study import StudyReconstructor, StudyResult

__all__ = ["EXECUTORS", "BatchSummary", "Manifest", "ScaleOptions", "Study", "StudyReconstructor", "StudyResult",
           "list_studies", "parse_shard", "run_studies", "shard", "study_seed"]
