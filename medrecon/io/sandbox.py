"""Parse untrusted files in a forked child process, so a broken C library cannot hang or crash medrecon.

Fuzzing (``benchmarks/fuzz.py``) found files that send libhdf5 into an endless loop in its global-heap
parser (``H5HG__cache_heap_deserialize``) or make it allocate gigabytes for a file of kilobytes. No
Python-level check can interrupt C code, so every reader entry point (:func:`medrecon.app.pipeline.load_input`,
:func:`medrecon.io.volumes.load_volume`, and the identifier scan of run records) runs its parsing in a
child made with ``fork``:

- the child gets ``RLIMIT_DATA`` = its current size + ``MEDRECON_MAX_GB`` (a memory bomb fails there);
- the parent waits at most ``MEDRECON_READ_TIMEOUT`` seconds (default :data:`DEFAULT_TIMEOUT_S`) and then
  kills the child: the user gets one :class:`~medrecon.errors.InputError`, not a hang;
- a child that dies (segfault, out of memory) is reported the same way;
- the child dies with its parent (Linux ``PR_SET_PDEATHSIG``): a SIGKILLed medrecon leaves no parser
  spinning behind it;
- a file whose parse ran past the timeout is not parsed again in the same process (the identifier scan
  of the error path would otherwise double the wait);
- the result comes back as JSON plus raw array bytes (never pickle): arrays keep their dtype and shape;
- warnings and library log records of the child are re-emitted in the parent (the CLI holds them back);
- a ``MedreconError`` raised in the child is raised again in the parent with the same class and message;
  any other exception becomes :class:`ReaderBug` carrying the child's traceback (a bug to report).

Where ``fork`` is not available (Windows) or ``MEDRECON_READ_TIMEOUT=0``, the function runs in-process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import select
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medrecon import errors
from medrecon.errors import InputError, MedreconError

__all__ = ["DEFAULT_TIMEOUT_S", "ENV_TIMEOUT", "ReaderBug", "hung", "isolated", "read_timeout"]

ENV_TIMEOUT = "MEDRECON_READ_TIMEOUT"
#: Seconds one file may take to parse. Reading a 2.5 GiB fastMRI file takes well under a minute; ten
#: minutes leaves room for slow network file systems while still ending a library hang.
DEFAULT_TIMEOUT_S = 600.0
_HEADER = 8  # bytes of the big-endian length prefix of the JSON header


#: Inputs whose parse ran past the timeout in this process (resolved paths).
_HUNG: set[str] = set()


def _key(path: Path) -> str:
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return str(path)


def hung(path: Path) -> bool:
    """Whether parsing ``path`` already ran past the read timeout in this process."""
    return _key(path) in _HUNG


class ReaderBug(RuntimeError):
    """A reader raised something other than MedreconError in the child: a bug in medrecon (report it)."""


def read_timeout() -> float:
    """``MEDRECON_READ_TIMEOUT`` in seconds (0 = parse in-process, no isolation)."""
    text = os.environ.get(ENV_TIMEOUT, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and np.isfinite(value)):
        raise InputError(f"{ENV_TIMEOUT}={text!r} is not a number of seconds >= 0; unset it or give e.g. 600")
    return value


# ----------------------------------------------------------------------------- encoding (no pickle)


def _encode(obj: Any, arrays: list[np.ndarray]) -> Any:
    """JSON-ready form of a reader result; arrays are replaced by references into ``arrays``."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:  # object arrays cannot travel as raw bytes (and are never reader output)
            return [_encode(v, arrays) for v in obj.tolist()]
        arrays.append(np.ascontiguousarray(obj))
        return {"__array__": len(arrays) - 1}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: _encode(getattr(obj, f.name), arrays) for f in dataclasses.fields(obj)}
        return {"__dataclass__": f"{type(obj).__module__}:{type(obj).__qualname__}", "fields": fields}
    if isinstance(obj, Path):
        return {"__path__": str(obj)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bytes):
        return {"__bytes__": obj.decode("latin-1")}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot return a {type(obj).__name__} from an isolated reader")


_ALLOWED_DATACLASSES = {
    "medrecon.io.measurement:LoadedInput",
    "medrecon.io.volumes:Volume",
}


def _decode(obj: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        return arrays[obj["__array__"]]
    if "__path__" in obj:
        return Path(obj["__path__"])
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    if "__bytes__" in obj:
        return obj["__bytes__"].encode("latin-1")
    if "__dict__" in obj:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__dict__"]}
    if "__dataclass__" in obj:
        name = obj["__dataclass__"]
        if name not in _ALLOWED_DATACLASSES:  # only our own result types are ever rebuilt
            raise ReaderBug(f"isolated reader returned an unexpected type {name}")
        module, qualname = name.split(":")
        cls = getattr(sys.modules.get(module) or __import__(module, fromlist=[qualname]), qualname)
        return cls(**{k: _decode(v, arrays) for k, v in obj["fields"].items()})
    return obj


# ----------------------------------------------------------------------------- child


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view[:1 << 24])
        view = view[n:]


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this child when its parent dies; exit now if the parent is already gone."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG (linux/prctl.h)
    except (OSError, AttributeError):  # not Linux: the parent's kill on timeout still applies
        return
    if os.getppid() != parent:  # the parent died between fork and prctl
        os._exit(1)


def _child(fd: int, fn: Callable[..., Any], args: tuple, name: str, parent: int = 0) -> None:
    """Run in the forked child: parse, send the result, and ``_exit`` (no atexit handlers, no flushing)."""
    code = 0
    try:
        import faulthandler

        faulthandler.disable()  # a crash of the child is reported by the parent, not dumped to the terminal
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # C libraries must not print into the user's terminal or logs
        os.dup2(devnull, 2)
        if parent:
            _die_with_parent(parent)
        _limit_memory()
        records: list[logging.LogRecord] = []

        class _Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record)

        root = logging.getLogger()
        for lg in [root, *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger))]:
            lg.handlers = []
            lg.propagate = True
        root.addHandler(_Keep(logging.WARNING))
        arrays: list[np.ndarray] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                header: dict[str, Any] = {"ok": _encode(fn(*args), arrays)}
            except MedreconError as exc:
                header = {"error": [type(exc).__name__, str(exc)]}
            except MemoryError:
                message = (f"reading {name} needs more memory than MEDRECON_MAX_GB allows; "
                           "the file is damaged or crafted, or raise MEDRECON_MAX_GB")
                header = {"error": ["InputError", message]}
            except BaseException as exc:  # noqa: BLE001 - reported to the parent as a bug
                header = {"bug": [type(exc).__name__, "".join(traceback.format_exception(exc))[-4000:]]}
                arrays = []
        header["warnings"] = [str(w.message) for w in caught][:100]
        header["logs"] = [[r.name, r.levelno, _message(r)] for r in records][:100]
        header["arrays"] = [[a.dtype.str, list(a.shape)] for a in arrays]
        text = json.dumps(header).encode()
        _write_all(fd, len(text).to_bytes(_HEADER, "big") + text)
        for a in arrays:
            if a.size:
                _write_all(fd, a.view(np.uint8).reshape(-1) if a.dtype.kind != "O" else b"")
    except BaseException:  # noqa: BLE001 - anything here (a full pipe, a dead parent) just ends the child
        code = 3
    finally:
        os._exit(code)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record is dropped
        return ""


def _limit_memory() -> None:
    try:
        import resource

        from medrecon.io.guards import _data_size, max_bytes

        current = _data_size()
        if current is None:
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        wanted = current + max_bytes() + 256 * 2**20
        if hard != resource.RLIM_INFINITY:
            wanted = min(wanted, hard)
        if soft == resource.RLIM_INFINITY or soft > wanted:
            resource.setrlimit(resource.RLIMIT_DATA, (wanted, hard))
    except Exception:  # noqa: BLE001 - no limit is better than no reader; the in-process guards still apply
        return


# ----------------------------------------------------------------------------- parent


def _read_exactly(fd: int, n: int, deadline: float, into: memoryview | None = None) -> bytes | None:
    """``n`` bytes from ``fd`` before ``deadline`` (None when the deadline passes or the pipe closes early)."""
    buf = into if into is not None else memoryview(bytearray(n))
    got = 0
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            continue
        chunk = os.readv(fd, [buf[got:]]) if hasattr(os, "readv") else 0
        if chunk == 0:
            return None  # EOF: the child died
        got += chunk
    return bytes(buf) if into is None else b""


class _Child:
    """A forked child that is reaped exactly once (a second waitpid would fail or hit a reused pid)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.status = pid, None

    def reap(self) -> int:
        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)
        return self.status

    def kill(self) -> int:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.reap()


def isolated(fn: Callable[..., Any], *args: Any, name: str, what: str = "file") -> Any:
    """``fn(*args)`` run in a forked child with the memory cap and the read timeout (see module docs).

    Args:
        fn: a module-level function returning arrays, numbers, strings, paths, lists, dicts, tuples and
            the reader dataclasses (``LoadedInput``, ``Volume``).
        name: the file's base name, for messages.
        what: the kind of file, for messages.

    Raises:
        MedreconError: what ``fn`` raised (same class and message), or an InputError when the child
            hung past the timeout or died.
        ReaderBug: ``fn`` raised another exception (the child's traceback is in the message).
    """
    from medrecon.io.guards import max_bytes

    timeout = read_timeout()
    max_bytes()  # a bad MEDRECON_MAX_GB is reported here, in the parent, not as a dead child
    if timeout == 0 or not hasattr(os, "fork") or not hasattr(os, "readv"):
        return fn(*args)
    if any(hung(a) for a in args if isinstance(a, Path)):
        # the first attempt may have been the identifier scan, whose timeout is never shown: say it in full here
        raise InputError(f"reading {name} did not finish within {timeout:g} s ({ENV_TIMEOUT}); the {what} is "
                         "damaged or crafted to hang its parser (not retried in this run)")
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    r, w = os.pipe()
    with warnings.catch_warnings():
        # Python warns that fork() with threads may deadlock: the child only parses files (no locks
        # of other threads are needed) and ends with os._exit.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(r)
        _child(w, fn, args, name, parent)
    os.close(w)
    child = _Child(pid)
    deadline = time.monotonic() + timeout
    try:
        return _collect(r, child, deadline, timeout, name, what)
    except InputError:
        if time.monotonic() >= deadline:
            _HUNG.update(_key(a) for a in args if isinstance(a, Path))
        raise
    finally:
        child.kill()  # Ctrl-C while waiting, or a bad reply: never leave the child behind (no-op once reaped)
        os.close(r)


def _collect(r: int, child: _Child, deadline: float, timeout: float, name: str, what: str) -> Any:
    head = _read_exactly(r, _HEADER, deadline)
    header_bytes = None if head is None else _read_exactly(r, int.from_bytes(head, "big"), deadline)
    if header_bytes is None:
        return _failed(child, deadline, timeout, name, what)
    header = json.loads(header_bytes)
    arrays = []
    for dtype, shape in header["arrays"]:
        a = np.empty(shape, dtype=np.dtype(dtype))
        if a.size and _read_exactly(r, a.nbytes, deadline, memoryview(a.view(np.uint8).reshape(-1))) is None:
            return _failed(child, deadline, timeout, name, what)
        arrays.append(a)
    child.reap()
    for message in header.get("warnings", []):
        warnings.warn(message, UserWarning, stacklevel=3)
    for logger, level, message in header.get("logs", []):
        logging.getLogger(logger).log(level, "%s", message)
    if "error" in header:
        cls_name, message = header["error"]
        cls = getattr(errors, cls_name, None)
        raise (cls if isinstance(cls, type) and issubclass(cls, MedreconError) else InputError)(message)
    if "bug" in header:
        cls_name, text = header["bug"]
        raise ReaderBug(f"{cls_name} while reading {name} (a medrecon bug; please report it):\n{text}")
    return _decode(header["ok"], arrays)


def _failed(child: _Child, deadline: float, timeout: float, name: str, what: str) -> Any:
    """The child hung (past the deadline) or died: kill and reap it, and say which."""
    if time.monotonic() >= deadline:
        child.kill()
        raise InputError(f"reading {name} did not finish within {timeout:g} s ({ENV_TIMEOUT}); the {what} is "
                         "damaged or crafted to hang its parser")
    status = child.reap()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        cause = "ran out of memory" if sig == signal.SIGKILL else f"crashed ({signal.Signals(sig).name})"
        raise InputError(f"the parser {cause} reading {name}; the {what} is damaged or crafted")
    raise InputError(f"the parser stopped reading {name} (exit status {os.WEXITSTATUS(status)}); the {what} is "
                     "damaged or larger than MEDRECON_MAX_GB allows")
