"""The linear-operator protocol shared by every physics model in medrecon.

An operator ``A`` maps a tensor with trailing shape ``in_shape`` to one with trailing shape
``out_shape``; any leading dimensions are batch dimensions and pass through untouched.

Design (see docs/design.md, section 2):
  * ``A(x)`` / ``A.forward(x)`` applies the operator, ``A.adjoint(y)`` its exact adjoint,
    ``A.normal(x)`` applies ``A^H A`` (override when a cheaper closed form exists).
  * ``A.H`` is a cached adjoint view with ``A.H.H is A``.
  * ``A @ B`` composes in mathematical order: ``(A @ B)(x) == A(B(x))``.
  * Calls check the trailing shape and the real/complex kind and name the operator in errors.
  * Operators never mutate themselves in ``forward``; masks, maps and geometry are buffers.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

__all__ = ["LinearOperator", "OperatorShapeError", "Composition", "Adjoint", "Identity", "ScalarMultiply"]


class OperatorShapeError(ValueError):
    """Raised when a tensor does not match an operator's domain or range."""


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(..., " + ", ".join(str(s) for s in shape) + ")" if len(shape) else "(...)"


class LinearOperator(nn.Module):
    """Base class of all linear operators.

    Subclasses implement ``_forward`` and ``_adjoint`` (and optionally ``_normal``) on tensors
    whose trailing dimensions already passed the shape check.

    Args:
        in_shape: trailing shape of the domain, e.g. ``(H, W)``.
        out_shape: trailing shape of the range, e.g. ``(C, H, W)``.
        in_complex: True if inputs must be complex, False if real, None to accept both.
        out_complex: same for the range (checked on ``adjoint`` inputs).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        in_complex: Optional[bool] = None,
        out_complex: Optional[bool] = None,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.out_shape = tuple(int(s) for s in out_shape)
        self.in_complex = in_complex
        self.out_complex = out_complex

    # ------------------------------------------------------------------ checks
    @property
    def name(self) -> str:
        return type(self).__name__

    def _check(self, x: torch.Tensor, shape: tuple, complex_: Optional[bool], where: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise OperatorShapeError(f"{self.name}.{where}: expected a torch.Tensor, got {type(x).__name__}")
        n = len(shape)
        ok = x.dim() >= n and tuple(x.shape[x.dim() - n:]) == shape
        if not ok:
            raise OperatorShapeError(
                f"{self.name}.{where}: expected trailing shape {_fmt_shape(shape)}, got {tuple(x.shape)}"
            )
        if complex_ is True and not x.is_complex():
            raise OperatorShapeError(f"{self.name}.{where}: expected a complex tensor, got {x.dtype}")
        if complex_ is False and x.is_complex():
            raise OperatorShapeError(f"{self.name}.{where}: expected a real tensor, got {x.dtype}")

    # --------------------------------------------------------------- interface
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D401 - nn.Module API
        """Apply the operator. Shapes: ``(..., *in_shape) -> (..., *out_shape)``."""
        self._check(x, self.in_shape, self.in_complex, "forward")
        return self._forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply the exact adjoint. Shapes: ``(..., *out_shape) -> (..., *in_shape)``."""
        self._check(y, self.out_shape, self.out_complex, "adjoint")
        return self._adjoint(y)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``A^H A``. Shapes: ``(..., *in_shape) -> (..., *in_shape)``."""
        self._check(x, self.in_shape, self.in_complex, "normal")
        return self._normal(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self._adjoint(self._forward(x))

    @property
    def H(self) -> "LinearOperator":
        """The adjoint operator, cached so that ``A.H.H is A``."""
        adj = self.__dict__.get("_adjoint_view")
        if adj is None:
            adj = Adjoint(self)
            # Stored outside nn.Module's registry: registering it would create a module cycle.
            self.__dict__["_adjoint_view"] = adj
        return adj

    def batch_repeat(self, k: int) -> "LinearOperator":
        """The operator for inputs whose batch rows are each repeated ``k`` times (slice-major).

        Operators with per-slice buffers (e.g. per-slice coil maps) return a copy with those buffers
        repeated; shared operators return themselves.
        """
        return self

    def batch_select(self, idx: slice) -> "LinearOperator":
        """The operator for a slice ``idx`` of the batch rows (per-slice buffers are sliced; shared ones kept)."""
        return self

    def __matmul__(self, other: "LinearOperator") -> "LinearOperator":
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return Composition(self, other)

    def __mul__(self, scalar: float) -> "LinearOperator":
        if not isinstance(scalar, (int, float)):
            return NotImplemented
        return Composition(self, ScalarMultiply(self.in_shape, float(scalar), self.in_complex))

    __rmul__ = __mul__

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, out_shape={self.out_shape}"


class Adjoint(LinearOperator):
    """The adjoint view ``A^H`` of an operator; ``Adjoint(A).H is A``."""

    def __init__(self, op: LinearOperator) -> None:
        super().__init__(op.out_shape, op.in_shape, op.out_complex, op.in_complex)
        self.op = op

    @property
    def name(self) -> str:
        return f"{self.op.name}.H"

    @property
    def H(self) -> LinearOperator:
        return self.op

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op._adjoint(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op._forward(y)

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self.op._forward(self.op._adjoint(x))


class Composition(LinearOperator):
    """``A @ B``: apply ``B`` then ``A``. Its adjoint is ``B^H A^H``."""

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        if outer.in_shape != inner.out_shape:
            raise OperatorShapeError(
                f"cannot compose {outer.name} (domain {_fmt_shape(outer.in_shape)}) with "
                f"{inner.name} (range {_fmt_shape(inner.out_shape)})"
            )
        super().__init__(inner.in_shape, outer.out_shape, inner.in_complex, outer.out_complex)
        self.outer = outer
        self.inner = inner

    @property
    def name(self) -> str:
        return f"({self.outer.name} @ {self.inner.name})"

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer._forward(self.inner._forward(x))

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner._adjoint(self.outer._adjoint(y))

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner._adjoint(self.outer._normal(self.inner._forward(x)))


class Identity(LinearOperator):
    """The identity on tensors with trailing shape ``shape``."""

    def __init__(self, shape: Sequence[int], is_complex: Optional[bool] = None) -> None:
        super().__init__(shape, shape, is_complex, is_complex)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y


class ScalarMultiply(LinearOperator):
    """Multiplication by a real scalar ``s`` (self-adjoint)."""

    def __init__(self, shape: Sequence[int], scale: float, is_complex: Optional[bool] = None) -> None:
        super().__init__(shape, shape, is_complex, is_complex)
        self.scale = float(scale)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.scale


class RowWeighted(LinearOperator):
    """``W^(1/2) A``: the operator ``A`` followed by a per-measurement weight (real, non-negative).

    Weighted least squares ``||W^(1/2) (A x - y)||^2`` is ordinary least squares on this operator and the
    whitened data ``W^(1/2) y``, so every method written for ``||A x - y||^2`` (CG data consistency, the
    samplers' likelihoods, primal-dual TV) takes statistical weights without a change (PWLS for CT,
    Sauer & Bouman 1993; Fessler 1994).

    Args:
        op: the operator ``A``.
        sqrt_weight: ``W^(1/2)``, shape ``(B, *op.out_shape)`` (one row per batch row) or ``op.out_shape``.
        check: verify that the weights are finite and non-negative (two host syncs; a caller that rebuilds the
            operator at every sampler step from weights it made non-negative itself passes False).

    Shapes:
        as ``op``.
    """

    def __init__(self, op: LinearOperator, sqrt_weight: torch.Tensor, check: bool = True) -> None:
        super().__init__(op.in_shape, op.out_shape, op.in_complex, op.out_complex)
        if sqrt_weight.is_complex() or tuple(sqrt_weight.shape[-len(op.out_shape):]) != tuple(op.out_shape):
            raise OperatorShapeError(f"RowWeighted: weights {_fmt_shape(sqrt_weight.shape)} do not fit the "
                                     f"measurement shape {_fmt_shape(op.out_shape)} (real values expected)")
        if check and (bool((sqrt_weight < 0).any()) or not bool(torch.isfinite(sqrt_weight).all())):
            raise ValueError("RowWeighted: weights must be finite and non-negative")
        self.op = op
        self.register_buffer("sqrt_weight", sqrt_weight, persistent=False)

    @property
    def name(self) -> str:
        return f"RowWeighted({self.op.name})"

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sqrt_weight * self.op.forward(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(self.sqrt_weight * y)

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(self.sqrt_weight.square() * self.op.forward(x))

    def batch_repeat(self, k: int) -> "LinearOperator":
        w = self.sqrt_weight
        w = w.repeat_interleave(k, dim=0) if w.dim() > len(self.out_shape) else w
        return RowWeighted(self.op.batch_repeat(k), w)

    def batch_select(self, idx: slice) -> "LinearOperator":
        w = self.sqrt_weight
        return RowWeighted(self.op.batch_select(idx), w[idx] if w.dim() > len(self.out_shape) else w)
