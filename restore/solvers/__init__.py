"""Solvers: recover x from y = noise(A(x)); all share one call shape (see :mod:`restore.solvers.base`)."""

from .annealed_langevin import annealed_langevin
from .base import check_compatible, keep_observed, missing_capabilities, requires
from .bm3d import bm3d
from .classical import SOLVERS
from .ddnm import ddnm
from .ddrm import ddrm
from .diffpir import diffpir
from .dpir import dpir
from .dps import dps
from .epll import epll
from .langevin import langevin
from .latent import csgm
from .map import map_estimate
from .pigdm import pigdm
from .pixelcnn_inpaint import pixelcnn_inpaint
from .repaint import repaint
from .tweedie import tweedie

#: Classical (non-learned) solvers by name: those of classical.py and BM3D.
CLASSICAL = {**SOLVERS, "bm3d": bm3d}

#: Diffusion solvers: they need a prior with Tweedie's estimate (a DDPM, or the Gaussian reference).
DIFFUSION = {"ddrm": ddrm, "ddnm": ddnm, "pigdm": pigdm, "dps": dps, "diffpir": diffpir, "repaint": repaint,
             "dpir": dpir, "tweedie": tweedie}

#: Latent-optimization solvers: they need a prior that decodes a latent (VAE, GAN).
LATENT = {"csgm": csgm}

#: Solvers on explicit densities and scores: a flow's exact score and density, a diffusion prior's
#: scores at many noise levels, a PixelCNN's conditionals.
DENSITY = {"map": map_estimate, "langevin": langevin, "annealed-langevin": annealed_langevin,
           "conditional": pixelcnn_inpaint}

#: Solvers on patch priors: half-quadratic splitting with a Gaussian mixture of patches (EPLL).
PATCH = {"epll": epll}

# Every prior solver returns y itself on noiselessly observed pixels (base.keep_observed).
DIFFUSION, LATENT, DENSITY, PATCH = ({name: keep_observed(fn) for name, fn in group.items()}
                                     for group in (DIFFUSION, LATENT, DENSITY, PATCH))

#: Solvers that use a learned prior, by name. Each has ``prior_needs``: the prior methods it calls.
PRIOR_SOLVERS: dict = {**DIFFUSION, **LATENT, **DENSITY, **PATCH}

#: The prior solvers that return one estimate (a MAP), not a posterior sample: several runs differ
#: only by their random starts, so a mean and a standard deviation over them mean little.
ESTIMATORS = ("csgm", "map", "dpir")


def solvers_for(prior) -> list[str]:
    """Names of the solvers whose needs the prior meets (the prior's methods, not its class)."""
    return [name for name, fn in PRIOR_SOLVERS.items() if all(hasattr(prior, m) for m in fn.prior_needs)]


__all__ = ["CLASSICAL", "DENSITY", "DIFFUSION", "ESTIMATORS", "LATENT", "PATCH", "PRIOR_SOLVERS", "check_compatible",
           "missing_capabilities", "requires", "solvers_for"]
