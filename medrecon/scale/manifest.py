"""``OUT/manifest.json``: the status of every study of a batch (done, failed with a reason, pending).

The manifest is what makes a batch resumable and auditable: a rerun reads it to skip finished
studies and (with ``--only-failed``) to retry only the failures, and a study is never silently
dropped because every listed input has an entry. Several writers may share one output folder (the
shards of a Slurm array, a Ray driver), so every change is a read-merge-write under an advisory
file lock, and the file itself is replaced atomically: a reader never sees half a manifest. The lock
file exists only while a process holds or waits for the lock, so a finished batch leaves nothing but
outputs, run records and the manifest. Batches started together on one folder share the work through
per-study claims (:mod:`medrecon.scale.claims`), taken under the same lock.

The files on disk stay the ground truth for "done": a study whose output and run record exist is
done even if a killed writer never got to record it. The manifest holds file names, settings and
one-line reasons only, never folder paths (hospital layouts put patient names in them).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from medrecon import methods as registry
from medrecon.errors import InputError
from medrecon.io.atomic import atomic_write
from medrecon.recon.config import ReconConfig

from .claims import Claims, claim_path
from .studies import Study, study_seed

__all__ = ["BUSY", "CLAIMED", "DONE_ELSEWHERE", "FAILED_ELSEWHERE", "FORMAT", "MANIFEST", "Manifest",
           "result_settings"]

MANIFEST = "manifest.json"
FORMAT = "medrecon-manifest/1"
STATUSES = ("done", "failed", "pending")
LOCK = ".manifest.lock"

# What Manifest.claim found: the study is ours to run; another process holds it; another process has
# finished it, or has tried it and failed, since this one read the manifest.
CLAIMED, BUSY, DONE_ELSEWHERE, FAILED_ELSEWHERE = "claimed", "busy", "done elsewhere", "failed elsewhere"

# The settings that decide what a study's output is. A rerun into the same folder with other values
# would mix two different reconstructions under one manifest, so it is refused. Device, batch size
# and progress bars only change where and how fast it runs.
# The method parameters among them come from the method registry, so a newly registered method's own
# parameters are recorded (and compared) too.
_RUN_KEYS = ("samples", "seed", "mask", "accel", "center_fraction", "mask_seed", "slices", "noise_std", "autocast",
             "support", "maps")


def _result_keys() -> tuple[str, ...]:
    return ("method", "prior", *registry.param_names(), *_RUN_KEYS)


def result_settings(cfg: ReconConfig, fmt: Optional[str]) -> dict[str, Any]:
    """The output-defining part of ``cfg`` plus the output format."""
    d = {**asdict(cfg), **cfg.options}
    return {**{k: d.get(k) for k in _result_keys()}, "format": fmt or "h5"}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on the lock file ``path``, removed again when the lock is released.

    The holder removes the file before unlocking it; a process that was waiting on the removed file
    sees that the path no longer names the file it locked and starts over on the current one, so
    exactly one process at a time holds the lock of the current file. After the last user, nothing
    is left in the folder. A no-op where the file system has no locks.
    """
    try:
        import fcntl
    except ImportError:  # Windows: single-machine use; shards there run one after another
        yield
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            os.unlink(path)  # a symbolic link in the lock's place: never lock (or create) its target
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # some network file systems are mounted without lock support
                pass
            else:
                mine = os.fstat(fd)
                try:
                    now = os.stat(path)
                except FileNotFoundError:
                    continue  # removed by the previous holder while we waited: lock the new one
                if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
                    continue
            try:
                yield
            finally:
                with contextlib.suppress(OSError):  # (without locks the file has no use either)
                    os.unlink(path)
            return
        finally:
            os.close(fd)  # releases the lock, after the file is gone


class Manifest:
    """Read and update ``out_dir/manifest.json``.

    Args:
        out_dir: the batch's output folder (created if missing).
    """

    def __init__(self, out_dir: Path, flush_seconds: float = 2.0) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / MANIFEST
        self._lock = self.out_dir / LOCK
        self.flush_seconds = flush_seconds
        self._pending: dict[str, dict[str, Any]] = {}
        self._last_flush = 0.0
        self._synced: dict[str, dict[str, Any]] = {}  # each study's entry as this process's sync left it
        self._claims = Claims()
        self._claimed: dict[str, Path] = {}  # study name -> the claim file this process holds
        self._cache: tuple[Any, dict[str, Any]] = (None, {})

    # ------------------------------------------------------------------------- reading
    def read(self) -> dict[str, Any]:
        """The manifest as a dict (an empty one when the folder has none yet)."""
        if not self.path.is_file():
            return {"format": FORMAT, "settings": None, "counts": {}, "studies": {}}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {self.path.name} in the output folder ({exc}); move it away to "
                             "rebuild it from the outputs present") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"{self.path.name} in the output folder is not a medrecon batch manifest")
        return data

    def statuses(self) -> dict[str, str]:
        """``{study name: status}``."""
        return {k: v.get("status", "pending") for k, v in self.read().get("studies", {}).items()}

    # ------------------------------------------------------------------------- writing
    def _write(self, data: dict[str, Any]) -> None:
        studies = data["studies"]
        data["studies"] = {k: studies[k] for k in sorted(studies)}
        data["counts"] = {s: sum(1 for e in studies.values() if e.get("status") == s) for s in STATUSES}
        data["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with atomic_write(self.path) as tmp:
            tmp.write_text(json.dumps(data, indent=1) + "\n")

    def sync(self, studies: Sequence[Study], settings: dict[str, Any]) -> dict[str, str]:
        """Record every study of this batch and reconcile the manifest with the files on disk.

        Finished outputs count as done; recorded failures stay failed (``--only-failed`` retries them);
        everything else is pending. Entries of inputs no longer listed are kept, untouched.

        Returns:
            ``{study name: status}`` for ``studies``.

        Raises:
            InputError: the folder holds a batch made with different output-defining settings.
        """
        with _locked(self._lock):
            data = self.read()
            old = data.get("settings")
            if old and old != settings:
                diff = ", ".join(f"{k} {old.get(k)!r} -> {settings.get(k)!r}" for k in sorted(settings)
                                 if old.get(k) != settings.get(k))
                raise InputError(f"the output folder holds a batch made with other settings ({diff}); use a new "
                                 "--out folder, or the same settings to resume")
            data["settings"] = settings
            out: dict[str, str] = {}
            for s in studies:
                entry = data["studies"].get(s.name, {})
                if s.finished():
                    if entry.get("status") != "done":
                        entry = {**entry, "status": "done", "reason": None}
                elif entry.get("status") == "failed":
                    pass
                else:
                    # Never recorded, interrupted, or its output was deleted since: to be done.
                    entry = {**entry, "status": "pending"}
                entry.setdefault("output", s.output.name)
                entry.setdefault("seed", study_seed(s.name, settings["seed"]))
                entry.setdefault("attempts", 0)
                data["studies"][s.name] = entry
                out[s.name] = entry["status"]
                self._synced[s.name] = dict(entry)
            self._write(data)
        return out

    # ------------------------------------------------------------------------- sharing the work
    def _studies_now(self) -> dict[str, Any]:
        """The manifest's study entries, re-parsed only when the file has changed (claims read it per study)."""
        try:
            st = self.path.stat()
            key: Any = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        if key is None or key != self._cache[0]:
            self._cache = (key, self.read().get("studies", {}))
        return self._cache[1]

    def claim(self, study: Study) -> str:
        """Try to take ``study`` for this process, so that batches sharing the folder run it once in total.

        Returns:
            :data:`CLAIMED` (run it, then report it through :meth:`update`; the claim is given back when
            that update is flushed), :data:`BUSY` (another live process holds it: try again later),
            :data:`DONE_ELSEWHERE` (its output and run record exist now) or :data:`FAILED_ELSEWHERE`
            (another process has recorded a failure of it since :meth:`sync`).
        """
        with _locked(self._lock):
            if study.name in self._claimed:
                return CLAIMED
            if study.finished():
                return DONE_ELSEWHERE
            entry = self._studies_now().get(study.name)
            if entry and entry.get("status") == "failed" and entry != self._synced.get(study.name):
                return FAILED_ELSEWHERE
            path = claim_path(study.output)
            if not self._claims.take(path):
                return BUSY
            self._claimed[study.name] = path
            return CLAIMED

    def close(self) -> None:
        """Flush, then give back the claims still held (studies an interrupted run never finished)."""
        try:
            self.flush()
        finally:
            if self._claimed:
                with _locked(self._lock):
                    self._claims.release_all()
                self._claimed.clear()
            else:
                self._claims.release_all()

    def update(self, name: str, **fields: Any) -> None:
        """Merge ``fields`` into one study's entry.

        Updates are written at most every ``flush_seconds`` (and by :meth:`flush`): rewriting a manifest
        of thousands of studies after every one would cost quadratic I/O. Losing unflushed updates to a
        crash is harmless: finished studies are recognised from their files on the next run, and an
        unrecorded failure is simply tried again.
        """
        self._pending[name] = {**self._pending.get(name, {}), **fields}
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered updates (read-merge-write under the lock)."""
        if not self._pending:
            return
        with _locked(self._lock):
            data = self.read()
            for name, fields in self._pending.items():
                data["studies"][name] = {**data["studies"].get(name, {}), **fields}
            self._write(data)
            # Only now that the results are on record may another process see these studies as free.
            for name in self._pending:
                path = self._claimed.pop(name, None)
                if path is not None:
                    self._claims.release(path)
        self._pending.clear()
        self._last_flush = time.monotonic()
