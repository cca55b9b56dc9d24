"""The table every registry uses (methods, formats): a dict that refuses a second entry of a name and answers
an unknown name with a one-line :class:`~medrecon.errors.InputError` listing the known ones (docs/design.md,
section 6)."""

from __future__ import annotations

from typing import Generic, TypeVar

from medrecon.errors import InputError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """``name -> spec`` in registration order.

    Args:
        kind: what the entries are, for messages (``"method"``, ``"format"``).
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def add(self, name: str, spec: T) -> T:
        """Register ``spec`` under ``name``; a name is registered once (ValueError: a programming error)."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self[name] = spec
        return spec

    def pick(self, name: str) -> T:
        """The entry ``name``, or a one-line InputError that lists the registered names."""
        try:
            return self[name]
        except KeyError:
            raise InputError(f"unknown {self.kind} {name!r}; choose from {', '.join(self)}") from None
