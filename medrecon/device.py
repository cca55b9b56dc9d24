"""Device selection with a clear error when a GPU is asked for but absent."""

from __future__ import annotations

import torch

from medrecon.errors import DeviceError

__all__ = ["cpu_has_native_bf16", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without a GPU is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) present")
    return dev


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16; read from /proc/cpuinfo).

    bf16 autocast halves the shipped UNets' CPU time there (issue 22, measured on the 2-core AVX512-BF16
    machine: ``benchmarks/results/profile_cpu_2026-12-07``); elsewhere it is emulated and slower, so
    callers that pick bf16 automatically ask this first. False where it cannot be read (non-Linux).
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False
