"""Solvers: recover x from y = noise(A(x)); all share one call shape (see :mod:`restore.solvers.base`)."""

from .base import check_compatible, missing_capabilities, requires
from .classical import SOLVERS as CLASSICAL

#: Solvers that use a learned prior, by name. Each has ``prior_needs``: the prior methods it calls
#: (x0_hat, score, decode, log_prob). Filled as the solver families land.
PRIOR_SOLVERS: dict = {}


def solvers_for(prior) -> list[str]:
    """Names of the solvers whose needs the prior meets (the prior's methods, not its class)."""
    return [name for name, fn in PRIOR_SOLVERS.items() if all(hasattr(prior, m) for m in fn.prior_needs)]


__all__ = ["CLASSICAL", "PRIOR_SOLVERS", "check_compatible", "missing_capabilities", "requires", "solvers_for"]
