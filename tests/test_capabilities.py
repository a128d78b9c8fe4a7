"""Every solver's declared needs (``requires``) cover what it calls on an operator.

Each solver runs on an operator seen through a stub that offers only what every operator has (the forward
map A, the noise, shapes, spec) and the capabilities the solver declares: calling anything else is an
AttributeError, and an optional capability the solver probes for (hasattr) looks absent, so its generic
path runs. A solver that used an undeclared method would have failed with an AttributeError on operators
lacking it (phase retrieval, a composition) instead of being refused with a message naming the solvers
that can.
"""

from __future__ import annotations

import pytest
import torch

from restore import operators as O
from restore.errors import RestoreError
from restore.priors import load_prior
from restore.solvers import CLASSICAL, PRIOR_SOLVERS, missing_capabilities, solvers_for

pytestmark = pytest.mark.usefixtures("one_thread")

#: What every operator offers (restore.operators.base.Operator).
BASE = ("A", "noise", "sigma_y", "measurement_shape", "check_input", "input_shape", "field_of_view", "spec",
        "arrays", "name", "forward")

SHAPE = (1, 28, 28)


class Declared:
    """``op`` with only the base interface and ``needs``."""

    def __init__(self, op, needs):
        self._op, self._needs = op, set(needs)

    def __getattr__(self, name):
        if name.startswith("_") or (name not in BASE and name not in self._needs):
            raise AttributeError(f"undeclared operator capability {name!r}")
        return getattr(self._op, name)

    def __call__(self, x, **kwargs):
        return self._op(x, **kwargs)


def _operators(noise: float):
    n = O.GaussianNoise(noise)
    return [O.Inpainting.random(SHAPE, 0.5, seed=0, noise=n), O.Blur.gaussian(1.0, 5, noise=n),
            O.Downsample(2, noise=n), O.Denoising(n if noise > 0 else O.GaussianNoise(0.05)),
            O.ValidBlur(torch.ones(3, 3) / 9, n)]


def _first_operator(fn, noise: float):
    return next((op for op in _operators(noise) if not missing_capabilities(fn, op)), None)


PRIORS = ("gaussian", "vae", "flow", "pixelcnn", "gmm-photo-gray")


def _cases():
    cases = [(name, None) for name in CLASSICAL]
    seen = set()
    for prior_name in PRIORS:
        try:
            prior = load_prior(prior_name, image_shape=SHAPE)
        except RestoreError:  # its weights are not installed (moved aside for a device run, gpu_prepare.sh):
            continue  # this file still collects, and test_every_solver_is_checked names what went unchecked
        for name in solvers_for(prior):
            if name not in seen:
                seen.add(name)
                cases.append((name, prior_name))
    return cases


@pytest.mark.parametrize("name,prior_name", _cases())
def test_a_solver_runs_on_an_operator_with_only_its_declared_needs(name, prior_name):
    fn = CLASSICAL[name] if prior_name is None else PRIOR_SOLVERS[name]
    noise = 0.0 if name == "conditional" else 0.05  # PixelCNN inpainting clamps noiseless pixels
    op = _first_operator(fn, noise)
    assert op is not None, f"{name}: no test operator has what it declares ({fn.requires})"
    x = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(0))
    y = op(x, generator=torch.Generator().manual_seed(1))
    stub = Declared(op, fn.requires)
    kwargs = {}
    if name in ("dps", "pigdm", "ddrm", "ddnm", "diffpir", "repaint", "annealed-langevin", "langevin", "map",
                "csgm", "dpir", "tv", "lasso", "richardson-lucy", "epll"):
        kwargs["steps"] = 2
    if name == "conditional":
        kwargs["particles"] = 1  # one raster pass of the PixelCNN instead of eight
    if prior_name is None:
        out = fn(y, stub, None, **kwargs)
    else:
        prior = load_prior(prior_name, image_shape=SHAPE)
        with torch.enable_grad():
            out = fn(y, stub, prior, generator=torch.Generator().manual_seed(0), **kwargs)
    assert out.shape == op.input_shape(tuple(y.shape)) and torch.isfinite(out).all()


def test_the_stub_hides_what_is_not_declared():
    op = O.Blur.gaussian(1.0, 5)
    stub = Declared(op, ("A_adjoint",))
    assert hasattr(stub, "A_adjoint") and not hasattr(stub, "V") and not hasattr(stub, "prox_l2")
    with pytest.raises(AttributeError, match="undeclared"):
        stub.U_adjoint(torch.zeros(1, *SHAPE))


def test_every_solver_is_checked():
    unchecked = (set(CLASSICAL) | set(PRIOR_SOLVERS)) - {name for name, _ in _cases()}
    assert not unchecked, f"no case for {sorted(unchecked)}: are the priors {PRIORS} installed?"
