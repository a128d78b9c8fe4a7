"""Solvers: recover x from y = noise(A(x)); all share one call shape (see :mod:`restore.solvers.base`)."""

from .base import check_compatible, missing_capabilities, requires
from .classical import SOLVERS as CLASSICAL

__all__ = ["CLASSICAL", "check_compatible", "missing_capabilities", "requires"]
