"""Runtime of the ``medrecon`` command line: one-line errors, identifier scrubbing, held third-party logs,
and SIGTERM handling (docs/security.md). Kept apart from argument parsing (``medrecon.cli``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

__all__ = ["HeldLogs", "end_progress_line", "input_paths", "on_sigterm", "one_line", "report_warnings", "scrub"]


def input_paths(argv: Sequence[str]) -> list[Path]:
    """Existing files and folders named on the command line (inputs, --like, --image ...)."""
    out = []
    for arg in argv:
        value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
        if value.startswith("-") or len(value) > 4096:
            continue
        try:
            p = Path(value)
            if p.exists():
                out.append(p)
        except (OSError, ValueError):
            continue
    return out


def scrub(message: str) -> str:
    """``message`` without the patient identifiers known to the privacy layer (:mod:`medrecon.io.privacy`).

    ``main`` registers the identifiers of every input named on the command line before the command runs,
    and readers add those of each file they parse, so this needs no second scan of the inputs. Our own
    messages never quote identifiers; this covers messages we do not write (third-party exceptions and
    warnings) that might quote a header field, before the stream layer sees them too.
    """
    try:
        from medrecon.io import privacy

        return privacy.scrub_text(message)
    except Exception:  # noqa: BLE001 - never let the error path itself fail; drop the text instead
        return "(message withheld: it could not be checked for patient identifiers)"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def end_progress_line() -> None:
    """End the line of a progress bar that an error interrupted, so ``medrecon: error:`` starts its own line.

    A bar left open by an exception (its loop never finished) has written ``\r``-separated text with no
    newline; in a log file the error would otherwise be glued to it. Only bars that were shown count.
    """
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is None:
        return
    try:
        bars = [b for b in list(getattr(tqdm_module.tqdm, "_instances", ())) if not getattr(b, "disable", True)]
    except Exception:  # noqa: BLE001 - the error line matters more than this cosmetic newline
        return
    if bars:
        try:
            sys.stderr.write("\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def on_sigterm(signum, frame) -> None:
    # Schedulers (SLURM, Kubernetes, systemd) stop jobs with SIGTERM. Raising here unwinds the stack
    # like Ctrl-C does, so atomic writes remove their temporaries instead of leaving them behind.
    raise SystemExit(128 + signum)


class HeldLogs:
    """Hold the log records of third-party libraries while a command runs.

    nibabel, pydicom and others print their warnings through ``logging`` handlers of their own
    (nibabel: "sizeof_hdr should be 348..."), which would break the one-line error and may quote
    header fields. While a command runs, every handler is set aside and records of level WARNING and
    above are kept; :meth:`restore` puts the handlers back.
    """

    def __init__(self) -> None:
        import logging

        self.records: list = []
        holder = self

        class _Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                holder.records.append(record)

        self.handler = _Keep(logging.WARNING)
        loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                          if isinstance(lg, logging.Logger)]
        self.saved = [(lg, lg.handlers[:], lg.propagate) for lg in loggers]
        for lg, _, _ in self.saved:
            lg.handlers = []
            lg.propagate = True
        logging.getLogger().addHandler(self.handler)

    def restore(self) -> None:
        import logging

        logging.getLogger().removeHandler(self.handler)
        for lg, handlers, propagate in self.saved:
            lg.handlers = handlers
            lg.propagate = propagate

    def messages(self) -> list[str]:
        out = []
        for r in self.records:
            try:
                out.append(r.getMessage())
            except Exception:  # noqa: BLE001, S112 - a malformed record is dropped, not fatal
                continue
        return out


def report_warnings(messages: list[str]) -> None:
    """Print each distinct warning once, as one scrubbed line, after a successful command."""
    seen: set[str] = set()
    for message in messages:
        text = scrub(message.strip().splitlines()[0] if message.strip() else "warning")
        if text not in seen:
            seen.add(text)
            print(f"medrecon: warning: {text}", file=sys.stderr)
