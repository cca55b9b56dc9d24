"""The study list of a batch: which inputs, where each output goes, how it is seeded and sharded.

Everything here is a pure function of the input listing, so every executor (and every shard of a
Slurm array, on any node) derives the same list, the same output names and the same seeds.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from medrecon.errors import InputError

__all__ = ["Study", "batch_inputs", "broken_link", "list_studies", "output_name", "parse_shard", "shard",
           "study_seed"]


def broken_link(path: Path) -> bool:
    """Whether ``path`` is a symbolic link whose target does not exist (or a loop of links)."""
    return path.is_symlink() and not path.exists()


@dataclass(frozen=True)
class Study:
    """One input of a batch.

    Attributes:
        name: the input's file name (BART pairs: the name without ``.cfl``); the manifest key and the
            seed source. File names are fine to record; folder paths may name patients and are not.
        input: path of the input file (BART: the pair's base path).
        output: path of the output (file, or folder for DICOM).
    """

    name: str
    input: Path
    output: Path

    @property
    def record(self) -> Path:
        """The output's run record; its presence marks the study as finished (it is written last)."""
        return Path(str(self.output) + ".run.json")

    def finished(self) -> bool:
        return self.output.exists() and self.record.is_file()


def batch_inputs(spec: str) -> list[Path]:
    """The input files of a folder or glob, sorted (BART pairs by their ``.cfl``).

    A symbolic link whose target is missing is listed too: it names a study the user meant to
    include, so it must fail on the record (see :class:`~medrecon.scale.study.StudyReconstructor`)
    rather than vanish from the batch. Folders and other non-files are not inputs.
    """
    p = Path(spec)
    files = sorted(p.iterdir()) if p.is_dir() else sorted(Path(f) for f in glob.glob(spec))
    out = []
    for f in files:
        # Hidden files include our own atomic-write temporaries and claims; run records and manifests are outputs.
        if (f.name.startswith(".") or f.name.endswith(".run.json") or f.name == "manifest.json"
                or f.suffix == ".hdr" or not (f.is_file() or broken_link(f))):
            continue
        out.append(f.with_suffix("") if f.suffix == ".cfl" else f)
    if not out:
        raise InputError(f"no input files in {spec}")
    return out


def output_name(inp: Path, fmt: Optional[str]) -> str:
    """``vol.h5`` -> ``vol.h5``, ``vol.nii.gz`` + nifti -> ``vol.nii.gz``, DICOM -> ``vol_dicom``."""
    from medrecon.io import formats

    stem = inp.name[:-7] if inp.name.endswith(".nii.gz") else inp.stem
    return stem + formats.output(inp.name + ".h5", fmt).out_suffix  # the suffix per --format (DICOM: a folder)


def list_studies(spec: str, out_dir: Path, fmt: Optional[str] = None) -> list[Study]:
    """The sorted studies of a folder or glob, with their outputs in ``out_dir``.

    Raises:
        InputError: no inputs, or two inputs that would write the same output (``a.h5`` and ``a.cfl``).
    """
    studies = [Study(f.name, f, Path(out_dir) / output_name(f, fmt)) for f in batch_inputs(spec)]
    seen: dict[str, str] = {}
    for s in studies:
        if s.output.name in seen:
            raise InputError(f"{seen[s.output.name]} and {s.name} would both write {s.output.name}; "
                             "rename one or reconstruct them into different --out folders")
        seen[s.output.name] = s.name
    names = [s.name for s in studies]
    if len(set(names)) != len(names):  # a glob across folders: names are the manifest keys
        raise InputError("two inputs share a file name; a batch needs unique file names (glob one folder at a time)")
    return studies


def study_seed(name: str, seed: int) -> int:
    """The sampler seed of one study: a stable hash of ``(seed, name)`` in ``[0, 2**31)``.

    sha256 (not Python's ``hash``, which is salted per process) so every worker, node and retry
    derives the same seed; 31 bits because NumPy's legacy ``RandomState`` takes at most 32.
    """
    digest = hashlib.sha256(f"medrecon-study:{int(seed)}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF


def parse_shard(spec: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N`` (K counts from 0, like ``$SLURM_ARRAY_TASK_ID``)."""
    try:
        k_s, n_s = spec.split("/")
        k, n = int(k_s), int(n_s)
    except ValueError:
        raise InputError(f"--shard must look like K/N (e.g. 0/4), got {spec!r}") from None
    if n < 1 or not 0 <= k < n:
        raise InputError(f"--shard {spec}: need N >= 1 and 0 <= K < N (K counts from 0)")
    return k, n


def shard(studies: Sequence[Study], k: int, n: int) -> list[Study]:
    """Shard ``k`` of ``n``: every ``n``-th study of the sorted list starting at ``k``.

    Strided rather than in blocks, so sizes that trend with the file names spread over the shards.
    The split is over the full sorted list (finished studies included), so a shard keeps the same
    studies across reruns and the ``n`` shards cover the list exactly once.
    """
    ordered = sorted(studies, key=lambda s: s.name)
    return ordered[k::n]
