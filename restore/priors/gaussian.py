"""Gaussian prior: x ~ N(mu, Sigma) with Sigma = W W^T + diag(d), fitted by PCA in seconds.

It is a real baseline (a learned prior with a closed-form posterior) and the reference against
which the diffusion solvers are tested. It offers what a DDPM offers, in the same convention
(:mod:`restore.priors.ddpm`): a noise schedule alpha_bar_t, x_t = sqrt(alpha_bar_t) x0' +
sqrt(1 - alpha_bar_t) eps in the model space x0' = 2 x - 1, and the Tweedie estimate
E[x0 | x_t], which here is exact at every noise level:

    E[x0' | x_t] = m + sqrt(a) S (a S + (1 - a) I)^{-1} (x_t - sqrt(a) m),   m = 2 mu - 1, S = 4 Sigma.

With S = Q diag(lam) Q^T every such product is diagonal in the eigenbasis Q. For a linear operator
with Gaussian noise, :meth:`GaussianPrior.posterior` gives the exact posterior N(mean, cov) of x.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..errors import RestoreError
from .base import DiffusionPrior
from .sampling import reverse_diffusion

FORMAT = "restore.gaussian-prior"


class GaussianPrior(DiffusionPrior):
    """N(mu, W W^T + diag(d)) on images of shape ``image_shape``, with a DDPM noise schedule."""

    family = "gaussian"
    exact_samples = True  # sample(method="exact") draws from the density itself

    def __init__(self, mean: torch.Tensor, factor: torch.Tensor, diag: torch.Tensor, image_shape,
                 betas: torch.Tensor | None = None):
        super().__init__()
        self.image_shape = tuple(int(v) for v in image_shape)
        D = math.prod(self.image_shape)
        if mean.numel() != D or factor.shape[0] != D or diag.numel() != D:
            raise RestoreError(f"Gaussian prior parameters do not match the image shape {self.image_shape}")
        self.register_buffer("mean", mean.reshape(D).double())  # mu, (D,)
        self.register_buffer("factor", factor.double())  # W, (D, k)
        self.register_buffer("diag", diag.reshape(D).double())  # d, (D,)
        if betas is None:
            betas = torch.linspace(1e-4, 0.02, 1000)  # Ho et al.'s linear schedule
        self.register_buffer("betas", torch.as_tensor(betas, dtype=torch.float32))
        self.register_buffer("alpha_bar", torch.cumprod(1 - self.betas.double(), 0).float())
        # Eigendecomposition of the model-space covariance S = 4 Sigma (float64, (D,) and (D, D)).
        lam, Q = torch.linalg.eigh(4 * self.covariance())
        self.register_buffer("eigenvalues", lam.clamp_min(0))
        self.register_buffer("eigenvectors", Q)

    # -- the distribution ------------------------------------------------------------------------

    def covariance(self) -> torch.Tensor:
        """Sigma = W W^T + diag(d), (D, D) in float64, in image space [0, 1]."""
        return self.factor @ self.factor.T + torch.diag(self.diag)

    @torch.no_grad()
    def sample(self, n: int, *, method: str = "exact", steps: int | None = None, variance: str = "beta_tilde",
               eta: float = 0.0, generator: torch.Generator | None = None, callback=None,
               clip: bool = True) -> torch.Tensor:
        """n images (n, C, H, W), clipped to [0, 1] by default: exact draws mu + W z1 + sqrt(d) z2
        (``method="exact"``), or the reverse diffusion of :mod:`restore.priors.sampling` with the
        exact score ("ancestral" or "ddim"), which is how a DDPM samples."""
        if method != "exact":
            return reverse_diffusion(self, n, steps=steps, method=method, variance=variance, eta=eta,
                                     generator=generator, callback=callback, clip=clip)
        D, k = self.factor.shape
        z1 = torch.randn(n, k, generator=generator, dtype=torch.float64).to(self.mean.device)
        z2 = torch.randn(n, D, generator=generator, dtype=torch.float64).to(self.mean.device)
        x = self.mean + z1 @ self.factor.T + z2 * self.diag.sqrt()
        x = x.float().reshape(n, *self.image_shape)
        return x.clamp(0, 1) if clip else x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; mu, Sigma) per image (a density on [0, 1]^D)."""
        r = x.reshape(x.shape[0], -1).double() - self.mean  # (B, D)
        Sigma_eigs = self.eigenvalues / 4
        proj = r @ self.eigenvectors  # coordinates in the eigenbasis, (B, D)
        maha = (proj.square() / Sigma_eigs).sum(1)
        return -0.5 * (maha + Sigma_eigs.log().sum() + r.shape[1] * math.log(2 * math.pi))

    def bits_per_dim(self, images: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """-log2 of the dequantised density, per dimension, on 8-bit images: an upper bound on the
        discrete model's bits/dim (uniform dequantisation, one draw u per image; Theis et al. 2016).
        ``images``: uint8, or floats in [0, 1] rounded to 8 bits."""
        k = images.double() if images.dtype == torch.uint8 else (images.double() * 255).round()
        u = torch.rand(k.shape, generator=generator, dtype=torch.float64).to(k.device)
        x = (k + u - 0.5) / 255  # uniform over the bin of width 1/255 centred on the level k/255 it was fitted on
        D = x[0].numel()
        return ((-self.log_prob(x) + D * math.log(255)) / (D * math.log(2))).float()

    # -- what diffusion solvers use (same convention as DDPMPrior) -------------------------------

    def _model_mean(self) -> torch.Tensor:
        return 2 * self.mean - 1  # m, (D,)

    def eps_and_x0(self, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_hat, x0_hat) in model space, both exact posterior means given x_t."""
        a = self.alpha_bar[t].double()
        shape = x_t.shape
        xt = x_t.reshape(shape[0], -1).double()  # (B, D)
        m = self._model_mean()
        gain = a.sqrt() * self.eigenvalues / (a * self.eigenvalues + (1 - a))  # (D,)
        x0 = m + ((xt - a.sqrt() * m) @ self.eigenvectors * gain) @ self.eigenvectors.T
        eps = (xt - a.sqrt() * x0) / (1 - a).sqrt()
        return eps.to(x_t.dtype).reshape(shape), x0.to(x_t.dtype).reshape(shape)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    # -- the exact posterior -----------------------------------------------------------------------

    def posterior(self, y: torch.Tensor, operator) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, C, H, W) and covariance (D, D) of p(x | y) for a linear operator with Gaussian noise.

        Sigma_post = (Sigma^-1 + A^T A / sigma_y^2)^-1 and mean = Sigma_post (Sigma^-1 mu + A^T y / sigma_y^2),
        written in the stable form mean = mu + Sigma A^T (A Sigma A^T + sigma_y^2 I)^-1 (y - A mu).
        """
        A = dense_matrix(operator, self.image_shape)  # (M, D), float64
        sigma = operator.sigma_y
        if sigma is None:
            raise RestoreError("the closed-form Gaussian posterior needs Gaussian noise")
        Sigma = self.covariance()
        gram = A @ Sigma @ A.T + sigma**2 * torch.eye(A.shape[0], dtype=torch.float64, device=A.device)  # (M, M)
        # Pseudo-inverse: without noise, rows of A that are zero (missing pixels) make gram singular.
        gain = (torch.linalg.pinv(gram, hermitian=True) @ A @ Sigma).T  # Sigma A^T gram^+, (D, M)
        yv = y.reshape(y.shape[0], -1).double()  # (B, M)
        mean = self.mean + (yv - self.mean @ A.T) @ gain.T
        cov = Sigma - gain @ A @ Sigma
        return mean.float().reshape(y.shape[0], *self.image_shape), 0.5 * (cov + cov.T)

    # -- files -----------------------------------------------------------------------------------

    def info(self) -> dict:
        run = self.run_info or {}
        return {"family": self.family, "source": self.source, "model": self.model,
                "image_size": list(self.image_shape[1:]),
                "channels": self.image_shape[0], "rank": self.factor.shape[1], "timesteps": self.num_timesteps,
                "parameters": self.mean.numel() + self.factor.numel() + self.diag.numel(),
                "training_data": run.get("data"), "file_list_hash": run.get("file_list_hash"),
                "offers": ["x0_hat (exact Tweedie)", "score", "sample", "log_prob", "posterior (closed form)",
                           "bits_per_dim"]}

    def save(self, folder: str | Path, run_info: dict) -> None:
        """``gaussian.safetensors`` (mean, factor, diag, betas) and ``run.json``."""
        from .. import io

        folder = Path(folder)
        io.save_arrays(folder / "gaussian.safetensors", {"mean": self.mean, "factor": self.factor, "diag": self.diag,
                                                         "betas": self.betas})
        io.write_json(folder / "run.json", {"format": FORMAT, "version": 1, "family": self.family,
                                            "image_shape": list(self.image_shape), **run_info})

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "GaussianPrior":
        from .. import io

        folder = Path(folder)
        run = json.loads((folder / "run.json").read_text())
        if run.get("format") != FORMAT:
            raise RestoreError(f"'{folder / 'run.json'}' is not a {FORMAT} file")
        arrays = io.load_arrays(folder / "gaussian.safetensors")
        prior = cls(arrays["mean"], arrays["factor"], arrays["diag"], run["image_shape"], arrays["betas"])
        prior.run_info = run
        return prior


def fit_gaussian(images: torch.Tensor, *, rank: int = 64, min_variance: float = 1e-4) -> GaussianPrior:
    """PCA fit to uint8 or [0, 1] images (N, C, H, W): the top ``rank`` principal directions carry
    their variances exactly, and d_i = Sigma_ii - (W W^T)_ii (at least ``min_variance``) keeps each
    pixel's own variance."""
    x = images.double()
    if images.dtype == torch.uint8:
        x = x / 255
    N = x.shape[0]
    D = x[0].numel()
    if N < 2:
        raise RestoreError("fitting a Gaussian needs at least 2 images")
    if not 1 <= rank <= D:
        raise RestoreError(f"rank must be between 1 and {D} (the number of pixels), got {rank}")
    X = x.reshape(N, D)
    mean = X.mean(0)
    cov = torch.zeros(D, D, dtype=torch.float64)
    for start in range(0, N, 8192):  # (D, D) accumulated in chunks: bounded memory
        chunk = X[start : start + 8192] - mean
        cov += chunk.T @ chunk
    cov /= N - 1
    lam, Q = torch.linalg.eigh(cov)  # ascending
    lam, Q = lam.flip(0)[:rank].clamp_min(0), Q.flip(1)[:, :rank]
    W = Q * lam.sqrt()  # (D, rank)
    diag = (cov.diagonal() - W.square().sum(1)).clamp_min(min_variance)
    return GaussianPrior(mean, W, diag, x.shape[1:])


def dense_matrix(operator, image_shape) -> torch.Tensor:
    """The matrix (M, D) of a linear operator's noiseless A on images of ``image_shape``, in float64."""
    import copy

    D = math.prod(image_shape)
    op = copy.deepcopy(operator).double()  # a float64 copy: the caller's operator stays as it is
    device = next(op.buffers(), torch.empty(0)).device
    basis = torch.eye(D, dtype=torch.float64, device=device).reshape(D, *image_shape)
    rows = torch.cat([op.A(basis[i : i + 256]).reshape(min(256, D - i), -1) for i in range(0, D, 256)])  # (D, M)
    return rows.T  # (M, D)


def train_gaussian(*, data: str, out, size: int | None = None, channels: int | None = None, rank: int = 64,
                   seed: int = 0, data_root=None) -> dict:
    """Fit a Gaussian prior to a dataset's training split and write it to the folder ``out``."""
    import time

    from .. import data as datasets

    out = Path(out)
    if (out / "run.json").exists():
        raise RestoreError(f"'{out}' already holds a model: choose another --out")
    try:  # the parents of --out too: `--out runs/NAME` works in a fresh clone
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RestoreError(f"cannot create the model folder '{out}': {exc.strerror or exc}") from None
    t0 = time.perf_counter()
    ds = datasets.training_data(data, size=size, channels=channels, seed=seed, root=data_root)
    prior = fit_gaussian(ds["train"], rank=rank)
    seconds = time.perf_counter() - t0
    val = ds.get("val")
    summary = {"data": ds.get("name", data), "file_list_hash": ds.get("file_list_hash"), "rank": rank,
               "train_images": len(ds["train"]), "seconds": round(seconds, 2)}
    if val is not None and len(val):
        summary["val_bits_per_dim"] = round(float(prior.bits_per_dim(val, generator=torch.Generator().manual_seed(seed)).mean()), 4)
    out.mkdir(exist_ok=True)
    prior.save(out, summary)
    datasets.write_training_digests(out, ds)
    return summary
