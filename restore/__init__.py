"""restore: image restoration and inverse problems with generative priors.

Images are tensors of shape (B, C, H, W) with values in [0, 1]. A degradation is
y = noise(A(x)) (``restore.operators``); a prior models clean images (``restore.priors``);
a solver recovers x from y (``restore.solvers``).
"""

__version__ = "0.1.0"
