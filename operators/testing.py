"""Public checks every operator must pass (docs/design.md, section 2).

Use in tests as ``check_operator(A)``; each check raises ``AssertionError`` with the measured
error when it fails, so a broken adjoint cannot pass silently.
"""

from __future__ import annotations

from typing import Optional

import torch

from .base import LinearOperator

__all__ = ["random_input", "random_output", "adjoint_error", "check_adjoint", "check_linearity",
           "check_batching", "check_autograd_adjoint", "check_operator", "default_tolerance"]


def _rand(shape, is_complex: Optional[bool], dtype: torch.dtype, device, generator) -> torch.Tensor:
    real_dtype = torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32
    if is_complex:
        cdt = torch.complex128 if real_dtype == torch.float64 else torch.complex64
        re = torch.randn(shape, dtype=real_dtype, generator=generator).to(device)
        im = torch.randn(shape, dtype=real_dtype, generator=generator).to(device)
        return torch.complex(re, im).to(cdt)
    return torch.randn(shape, dtype=real_dtype, generator=generator).to(device)


def _device(op: LinearOperator) -> torch.device:
    for t in list(op.buffers()) + list(op.parameters()):
        return t.device
    return torch.device("cpu")


def random_input(op: LinearOperator, batch: tuple = (), dtype: torch.dtype = torch.float32,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A random tensor in the operator's domain, shape ``(*batch, *in_shape)``."""
    return _rand((*batch, *op.in_shape), op.in_complex, dtype, _device(op), generator)


def random_output(op: LinearOperator, batch: tuple = (), dtype: torch.dtype = torch.float32,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A random tensor in the operator's range, shape ``(*batch, *out_shape)``."""
    return _rand((*batch, *op.out_shape), op.out_complex, dtype, _device(op), generator)


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.conj() * b).sum() if a.is_complex() or b.is_complex() else (a * b).sum()


def default_tolerance(dtype: torch.dtype) -> float:
    """1e-12 in double precision, 1e-5 in single (docs/design.md, section 2)."""
    return 1e-12 if dtype in (torch.float64, torch.complex128) else 1e-5


def adjoint_error(op: LinearOperator, dtype: torch.dtype = torch.float32, seed: int = 0) -> float:
    """Normalized adjoint error ``|<Ax, y> - <x, A^H y>| / (||Ax|| ||y||)``."""
    g = torch.Generator().manual_seed(seed)
    x = random_input(op, dtype=dtype, generator=g)
    y = random_output(op, dtype=dtype, generator=g)
    ax = op(x)
    ahy = op.adjoint(y)
    lhs = _inner(ax, y)
    rhs = _inner(x, ahy)
    denom = (torch.linalg.vector_norm(ax) * torch.linalg.vector_norm(y)).item()
    return float(abs((lhs - rhs).item()) / max(denom, 1e-300))


def check_adjoint(op: LinearOperator, dtype: torch.dtype = torch.float32, tol: Optional[float] = None) -> float:
    """Assert the dot-product test passes; returns the measured error."""
    tol = default_tolerance(dtype) if tol is None else tol
    err = adjoint_error(op, dtype)
    assert err < tol, f"{op.name}: adjoint error {err:.3e} >= {tol:.1e} ({dtype})"
    return err


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-30))


def check_linearity(op: LinearOperator, dtype: torch.dtype = torch.float32, tol: Optional[float] = None) -> float:
    """Assert ``A(a x + b z) == a A(x) + b A(z)``; returns the relative error."""
    tol = 10 * default_tolerance(dtype) if tol is None else tol
    g = torch.Generator().manual_seed(1)
    x = random_input(op, dtype=dtype, generator=g)
    z = random_input(op, dtype=dtype, generator=g)
    a, b = (0.7 - 0.2j, -1.3 + 0.5j) if op.in_complex else (0.7, -1.3)
    err = _rel(op(a * x + b * z), a * op(x) + b * op(z))
    assert err < tol, f"{op.name}: linearity error {err:.3e}"
    return err


def check_batching(op: LinearOperator, dtype: torch.dtype = torch.float32, tol: Optional[float] = None) -> float:
    """Assert that a batched call equals the stacked single calls (forward and adjoint)."""
    tol = 10 * default_tolerance(dtype) if tol is None else tol
    g = torch.Generator().manual_seed(2)
    x = random_input(op, (2, 3), dtype=dtype, generator=g)
    y = random_output(op, (2, 3), dtype=dtype, generator=g)
    fx = op(x)
    stacked = torch.stack([torch.stack([op(x[i, j]) for j in range(3)]) for i in range(2)])
    err_f = _rel(fx, stacked)
    ay = op.adjoint(y)
    stacked_a = torch.stack([torch.stack([op.adjoint(y[i, j]) for j in range(3)]) for i in range(2)])
    err_a = _rel(ay, stacked_a)
    err = max(err_f, err_a)
    assert err < tol, f"{op.name}: batched != stacked (forward {err_f:.3e}, adjoint {err_a:.3e})"
    return err


def check_autograd_adjoint(op: LinearOperator, dtype: torch.dtype = torch.float32, tol: Optional[float] = None) -> float:
    """Assert that autograd's vector-Jacobian product of ``forward`` equals ``adjoint``.

    For complex tensors PyTorch's VJP with cotangent ``y`` returns ``A^H y`` (conjugate Wirtinger).
    """
    tol = 10 * default_tolerance(dtype) if tol is None else tol
    g = torch.Generator().manual_seed(3)
    x = random_input(op, dtype=dtype, generator=g).requires_grad_(True)
    y = random_output(op, dtype=dtype, generator=g)
    (vjp,) = torch.autograd.grad(op(x), x, grad_outputs=y)
    err = _rel(vjp, op.adjoint(y))
    assert err < tol, f"{op.name}: autograd VJP != adjoint (rel. error {err:.3e})"
    return err


def check_operator(op: LinearOperator, dtype: torch.dtype = torch.float32) -> dict:
    """Run every check; returns a dict of measured errors."""
    return {
        "adjoint": check_adjoint(op, dtype),
        "linearity": check_linearity(op, dtype),
        "batching": check_batching(op, dtype),
        "autograd": check_autograd_adjoint(op, dtype),
        "normal": _check_normal(op, dtype),
    }


def _check_normal(op: LinearOperator, dtype: torch.dtype) -> float:
    tol = 10 * default_tolerance(dtype)
    g = torch.Generator().manual_seed(4)
    x = random_input(op, dtype=dtype, generator=g)
    err = _rel(op.normal(x), op.adjoint(op(x)))
    assert err < tol, f"{op.name}: normal() != adjoint(forward()) (rel. error {err:.3e})"
    return err
