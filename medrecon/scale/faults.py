"""Fault injection for testing executors (and for trying a cluster's recovery before trusting it).

:class:`HangOnce` is a per-study reconstructor that, on the first try at one chosen study, writes
its process id to a marker file and hangs, so a test (or an operator) can kill that worker in the
middle of the study and watch the executor retry it elsewhere. Later tries see the marker and run
normally. Not used by anything else in medrecon.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .studies import Study
from .study import StudyReconstructor, StudyResult

__all__ = ["HangOnce"]


class HangOnce(StudyReconstructor):
    """A :class:`StudyReconstructor` that hangs in its first try at ``hang_study``.

    Args:
        *args, **kwargs: as for :class:`StudyReconstructor`.
        hang_study: name of the study to hang in.
        marker: file to write this worker's pid to when the hang starts (its existence disarms the hang).
        hang_seconds: how long to hang before carrying on (a kill is expected well before).
    """

    def __init__(self, *args: Any, hang_study: str, marker: str, hang_seconds: float = 120.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hang_study = hang_study
        self.marker = Path(marker)
        self.hang_seconds = hang_seconds

    def __call__(self, study: Study, attempt: int = 1) -> StudyResult:
        if study.name == self.hang_study and not self.marker.exists():
            tmp = self.marker.with_name(self.marker.name + ".tmp")
            tmp.write_text(str(os.getpid()))
            os.replace(tmp, self.marker)  # the watcher never reads a half-written pid
            time.sleep(self.hang_seconds)
        return super().__call__(study, attempt)
