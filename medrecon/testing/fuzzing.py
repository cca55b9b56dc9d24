"""The hostile-input harness shared by the tests and ``benchmarks/fuzz.py``.

A *seed* is a tiny valid file from :mod:`medrecon.testing.samples`. A *mutation* turns its bytes into a
damaged or crafted variant (truncation, bit flips, boundary integers over header fields, random
chunks, random bytes behind the format's magic). :func:`exercise` feeds a file to the reader a user
would reach (``load_input`` + a cheap reconstruction for measurements, ``load_volume`` for images)
and returns normally or raises :class:`~medrecon.errors.MedreconError`; anything else it raises is
a bug. :func:`time_limit` turns a hang into an exception, so a fuzz run can never stall.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medrecon.testing.samples import seeds

__all__ = ["MUTATIONS", "Hang", "exercise", "make_seed", "mutate", "seed_files", "time_limit", "truncations"]

# Integers that break size arithmetic: zero, one, sign boundaries, 2^31, 2^32, 2^63 and their neighbours.
_BOUNDARY = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
             0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF]


class Hang(Exception):
    """An example ran longer than its time limit (a hang, or a reader doing unbounded work)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread after ``seconds`` (POSIX ``SIGALRM``; no-op elsewhere).

    The alarm interrupts Python code; a C call that never returns is caught instead by the fuzz
    runner's watchdog process, which kills a worker that stops reporting progress.
    """
    if not hasattr(signal, "setitimer"):
        yield
        return

    def _raise(signum, frame):
        raise Hang(f"example took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def make_seed(kind: str, folder: Path) -> Path:
    """Write the seed file(s) of ``kind`` (a key of :func:`medrecon.testing.samples.seeds`) into ``folder``."""
    writer, _, name = seeds()[kind]
    folder.mkdir(parents=True, exist_ok=True)
    return Path(writer(folder / name))


def seed_files(path: Path) -> list[Path]:
    """The files a seed path stands for (a BART base name is two files; four with its ``_traj`` pair)."""
    if path.suffix == "" and path.with_name(path.name + ".cfl").exists():
        files = [path.with_name(path.name + ".hdr"), path.with_name(path.name + ".cfl")]
        traj = path.with_name(path.name + "_traj")
        if traj.with_name(traj.name + ".cfl").exists():
            files += [traj.with_name(traj.name + ".hdr"), traj.with_name(traj.name + ".cfl")]
        return files
    return [path]


def truncations(size: int, dense_head: int = 1024, n_tail: int | None = None) -> list[int]:
    """Cut points: every byte of the first ``dense_head`` (where headers live), then ``n_tail`` evenly
    spaced points over the rest (``None``: every point)."""
    head = list(range(min(size, dense_head)))
    rest = range(min(size, dense_head), size)
    if n_tail is None or len(rest) <= n_tail:
        return head + list(rest)
    return head + [int(v) for v in np.linspace(rest.start, size - 1, n_tail)]


# ----------------------------------------------------------------------------- mutations


def _flip(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _boundary(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    width = rng.choice([1, 2, 4, 8])
    value = rng.choice(_BOUNDARY) & ((1 << (8 * width)) - 1)
    i = rng.randrange(max(1, len(b) - width))
    b[i : i + width] = value.to_bytes(width, rng.choice(["little", "big"]))
    return bytes(b[: len(data)] if len(b) > len(data) else b)


def _chunk(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    i = rng.randrange(len(b))
    n = rng.randint(1, 64)
    b[i : i + n] = rng.randbytes(min(n, len(b) - i))
    return bytes(b)


def _splice(data: bytes, rng: random.Random) -> bytes:
    i, j = sorted(rng.randrange(len(data) + 1) for _ in range(2))
    return data[:i] + rng.choice([b"", rng.randbytes(rng.randint(1, 32)), data[i:j]]) + data[j:]


def _magic_then_random(data: bytes, rng: random.Random) -> bytes:
    keep = rng.choice([4, 8, 16, 132, 348, 512])
    return data[:keep] + rng.randbytes(rng.randint(0, 2 * len(data)))


def _text_numbers(data: bytes, rng: random.Random) -> bytes:
    """Replace one run of ASCII digits (BART/NRRD headers, XML, JSON) by a hostile number."""
    import re

    runs = [m.span() for m in re.finditer(rb"\d+", data)]
    if not runs:
        return _flip(data, rng)
    i, j = rng.choice(runs)
    value = rng.choice([b"0", b"-1", b"1e308", b"nan", b"inf", b"99999999999999999999", b"4294967296", b"65536",
                        b"2147483648", b"", b"x", b"1" * 5000])
    return data[:i] + value + data[j:]


MUTATIONS = {"flip": _flip, "boundary": _boundary, "chunk": _chunk, "splice": _splice,
             "magic_then_random": _magic_then_random, "text_numbers": _text_numbers}


def mutate(data: bytes, rng: random.Random, name: str | None = None) -> tuple[str, bytes]:
    """Apply one mutation (``name`` or a random one); returns ``(name, bytes)``."""
    if not data:
        return "empty", rng.randbytes(rng.randint(0, 64))
    name = name or rng.choice(sorted(MUTATIONS))
    return name, MUTATIONS[name](data, rng)


def copy_seed(seed: Path, folder: Path) -> Path:
    """Copy a seed's file(s) into ``folder`` (fresh for every example) and return the path to read."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in seed_files(seed):
        shutil.copy2(f, folder / f.name)
    return folder / seed.name


# ----------------------------------------------------------------------------- the target


def exercise(path: Path, kind: str) -> object:
    """Read ``path`` as a user would and, for measurements, reconstruct it cheaply.

    ``kind`` is ``"measurement"`` (:func:`medrecon.app.pipeline.load_input`, then zero-filled MRI or FBP
    CT, which must give a finite image) or ``"image"`` (:func:`medrecon.io.volumes.load_volume`,
    which must give finite ``(S, H, W)`` float32 data). Returns what was produced.

    Raises:
        MedreconError: the clean refusal (the only exception type allowed).
        AssertionError: the file was accepted but the result is not valid (a bug).
    """
    if kind == "image":
        from medrecon.io.volumes import load_volume

        vol = load_volume(path)
        assert vol.data.ndim == 3 and vol.data.dtype == np.float32 and np.isfinite(vol.data).all()
        assert vol.affine.shape == (4, 4) and np.isfinite(vol.affine).all()
        assert all(np.isfinite(s) and s > 0 for s in vol.spacing)
        return vol
    from medrecon.app.pipeline import load_input, reconstruct
    from medrecon.recon.config import ReconConfig

    inp = load_input(path, axes="SCHW")
    method = "zero-filled" if inp.modality == "mri" else "fbp"
    res = reconstruct(inp, ReconConfig(method=method, device="cpu", progress=False))
    assert res.image.ndim == 3 and np.isfinite(res.image).all()
    return res


@contextlib.contextmanager
def fuzz_environment(max_gb: float = 0.25, read_timeout: float = 5.0) -> Iterator[None]:
    """A small memory cap and a short parse timeout while fuzzing.

    Args:
        max_gb: ``MEDRECON_MAX_GB``: the cap is under test, and the machine must survive it.
        read_timeout: ``MEDRECON_READ_TIMEOUT``: how long the isolated parser may run; ``0`` parses
            in-process (about 10x faster, for dense sweeps; the in-process guards still apply).
    """
    saved = {k: os.environ.get(k) for k in ("MEDRECON_MAX_GB", "MEDRECON_READ_TIMEOUT")}
    os.environ["MEDRECON_MAX_GB"] = str(max_gb)
    os.environ["MEDRECON_READ_TIMEOUT"] = str(read_timeout)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
