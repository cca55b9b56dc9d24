"""Per-study claims: several batches writing one output folder share the work instead of repeating it.

Before a process reconstructs a study it creates ``OUT/.<output name>.claim`` with ``O_CREAT|O_EXCL``
(under the manifest lock, see :meth:`~medrecon.scale.manifest.Manifest.claim`); a study claimed by
another live process is skipped and waited for, so two ``medrecon recon IN --out OUT`` started together
reconstruct each study once in total. The claim is removed once the study's result is in the manifest.

A claim names its owner (host, process id, a random token), and its owner touches it every
:data:`HEARTBEAT_SECONDS` while it holds it. It is *stale*, and taken over by the next process that
wants the study, when

- its owner is a process of this host that no longer runs (a killed batch: taken over at once), or
- it has not been touched for :data:`STALE_SECONDS` (an owner on another node that died, e.g. a lost
  Slurm task; the wait allows for NFS attribute caching and small clock differences between nodes).

Claim files are hidden, so a batch whose output folder is its input folder never lists them as inputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any, Optional

from medrecon.io.atomic import pid_alive

__all__ = ["HEARTBEAT_SECONDS", "STALE_SECONDS", "Claims", "claim_path"]

HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 300.0


def claim_path(output: Path) -> Path:
    """The claim file of the study that writes ``output``: a hidden sibling of the output."""
    return output.with_name(f".{output.name}.claim")


def _owner(path: Path) -> Optional[dict[str, Any]]:
    """The owner recorded in a claim file; ``{}`` when unreadable or half-written; ``None`` when it is gone."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class Claims:
    """The claims this process holds in one output folder, kept alive by a heartbeat thread.

    Methods that create or remove claim files are meant to run under the manifest lock, so that
    deciding "stale" and taking the claim over is one step for all processes sharing the folder.
    """

    def __init__(self) -> None:
        self.host = socket.gethostname()
        self._held: dict[Path, str] = {}  # claim file -> our token in it
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------------- queries
    def holds(self, path: Path) -> bool:
        with self._mutex:
            return path in self._held

    def stale(self, path: Path) -> bool:
        """Whether the claim at ``path`` may be taken over (see the module docstring); true when it is gone."""
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        except OSError:
            return False
        if age > STALE_SECONDS:
            return True
        owner = _owner(path)
        if owner is None:
            return True
        pid = owner.get("pid")
        if owner.get("host") != self.host or not isinstance(pid, int) or isinstance(pid, bool):
            return False  # another node's (judged by its heartbeat), or being written right now
        if pid == os.getpid():
            return not self.holds(path)  # left by an earlier process that had our pid
        return not pid_alive(pid)

    # ------------------------------------------------------------------------- taking and giving back
    def take(self, path: Path) -> bool:
        """Claim ``path`` for this process; ``False`` when another live process holds it."""
        if self.holds(path):
            return True
        if path.exists() or path.is_symlink():
            if not self.stale(path):
                return False
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        token = secrets.token_hex(8)
        body = {"host": self.host, "pid": os.getpid(), "token": token,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # only where the file system has no locks: another process was quicker
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(body) + "\n")
        with self._mutex:
            self._held[path] = token
        self._start_heartbeat()
        return True

    def release(self, path: Path) -> None:
        """Remove our claim at ``path`` (left alone if another process has taken it over since)."""
        with self._mutex:
            token = self._held.pop(path, None)
        if token is None:
            return
        owner = _owner(path)
        if owner is not None and owner.get("token") == token:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def release_all(self) -> None:
        """Give back every claim still held (an interrupted batch) and stop the heartbeat."""
        with self._mutex:
            paths = list(self._held)
        for p in paths:
            with contextlib.suppress(OSError):
                self.release(p)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._stop.clear()

    # ------------------------------------------------------------------------- heartbeat
    def _start_heartbeat(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._beat, name="medrecon-claims", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with self._mutex:
                paths = list(self._held)
            for p in paths:
                with contextlib.suppress(OSError):
                    os.utime(p)
