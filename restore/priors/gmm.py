"""Gaussian-mixture patch prior: Zoran & Weiss (2011), "From learning models of natural image patches
to whole image restoration" (ICCV), the prior of EPLL.

A patch v (C p^2 values in [0, 1]) is split into its mean (the DC, left unmodelled as in the paper) and
its coordinates c = B^T v in an orthonormal basis B of the zero-mean patches (Helmert's, n = C p^2 - 1
columns). On c the prior is a mixture of K full-covariance Gaussians,

    p(c) = sum_k pi_k N(c; mu_k, Sigma_k),

an exact density: log-density, score and, under Gaussian noise of variance s^2, the posterior of each
component (a Wiener filter) and of the mixture are closed form. Over a whole image the paper's expected
patch log likelihood EPLL(x) = sum_i log p(P_i x) sums over every overlapping patch. The restoration
algorithm (half-quadratic splitting) is :func:`restore.solvers.epll.epll`.

Because the mixture's posterior mean at any noise level is closed form, the prior also offers Tweedie's
estimate x0_hat(x_t) in the DDPM convention of :mod:`restore.priors.ddpm`, patch by patch and averaged over
the overlapping patches (an approximation of the image-level posterior mean): the diffusion solvers run on it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from ..errors import RestoreError
from .base import DiffusionPrior

FORMAT = "restore.gmm-prior"

#: Patches per chunk of the component computations: (chunk, K n) float32 values, 206 MB at K=200, n=63.
CHUNK = 4096

#: Patches per band of image rows in :meth:`GMMPatchPrior.patch_average` (what autograd keeps at once).
BAND = 1 << 14


def helmert_basis(d: int, dtype=torch.float64) -> torch.Tensor:
    """(d, d - 1) orthonormal columns spanning the vectors of zero mean: column j (1-based) is
    (1, ..., 1, -j, 0, ..., 0) / sqrt(j (j + 1)) with j ones (the Helmert matrix's rows, transposed)."""
    B = torch.zeros(d, d - 1, dtype=dtype)
    for j in range(1, d):
        B[:j, j - 1] = 1.0
        B[j, j - 1] = -j
        B[:, j - 1] /= math.sqrt(j * (j + 1))
    return B


class GMMPatchPrior(DiffusionPrior):
    """A mixture of K Gaussians over the zero-mean part of C x p x p patches, applied to images of any size."""

    family = "gmm"
    exact_samples = True  # sample draws patches from the mixture itself
    any_size = True

    def __init__(self, log_weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor, patch: int,
                 channels: int, betas: torch.Tensor | None = None):
        super().__init__()
        d = channels * patch * patch
        K = log_weights.numel()
        if means.shape != (K, d) or covs.shape != (K, d, d):
            raise RestoreError(f"GMM parameters do not match {K} components of {channels}x{patch}x{patch} patches")
        self.patch, self.channels, self.channel_groups = int(patch), int(channels), 1
        # Parameters as stored: pixel space, (K,), (K, d), (K, d, d); the means and covariances have zero DC.
        self.register_buffer("log_weights", torch.log_softmax(log_weights.double(), 0).float())
        self.register_buffer("means", means.float())
        self.register_buffer("covs", covs.float())
        B = helmert_basis(d)
        self.register_buffer("basis", B.float())  # (d, n)
        # In the coordinates c = B^T v: mu_k (K, n) and Sigma_k = U_k diag(lam_k) U_k^T.
        cov_c = B.T @ covs.double() @ B  # (K, n, n)
        lam, U = torch.linalg.eigh(0.5 * (cov_c + cov_c.transpose(1, 2)))
        self.register_buffer("mu", (means.double() @ B).float())
        self.register_buffer("lam", lam.clamp_min(1e-10).float())  # (K, n)
        self.register_buffer("U", U.float())  # (K, n, n)
        if betas is None:
            betas = torch.linspace(1e-4, 0.02, 1000)  # Ho et al.'s linear schedule, for Tweedie's estimate
        self.register_buffer("betas", torch.as_tensor(betas, dtype=torch.float32))
        self.register_buffer("alpha_bar", torch.cumprod(1 - self.betas.double(), 0).float())

    @property
    def components(self) -> int:
        return self.log_weights.numel()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, p, p): the channels it restores and its patch; images of any size larger than a patch."""
        return (self.channels * self.channel_groups, self.patch, self.patch)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def channelwise(self, groups: int) -> "GMMPatchPrior":
        """This mixture for images of ``groups`` times its channels, each channel on its own (a gray mixture
        on colour images). A shallow copy sharing the parameters."""
        import copy

        twin = copy.copy(self)
        twin.channel_groups = groups
        return twin

    # -- patches -----------------------------------------------------------------------------------

    def _whitening(self, s2: float):
        """For noise variance s2: W (n, K n) with W[:, k] = U_k diag(lam_k + s2)^(-1/2), the offsets
        mu_k W_k (K n,), and log det(Sigma_k + s2 I) (K,)."""
        K, n = self.lam.shape
        var = self.lam + s2  # (K, n)
        Wk = self.U * var.rsqrt()[:, None, :]  # (K, n, n): column j of U_k over sqrt(lam_kj + s2)
        offset = torch.einsum("kn,knm->km", self.mu, Wk).reshape(K * n)
        return Wk.permute(1, 0, 2).reshape(n, K * n), offset, var.log().sum(1)

    def _log_joint(self, c: torch.Tensor, whitening) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi_k + log N(c; mu_k, Sigma_k + s2 I), (N, K), and the whitened residuals z (N, K, n)."""
        W, offset, logdet = whitening
        N, n = c.shape
        z = (c @ W - offset).view(N, -1, n)  # (N, K, n)
        maha = z.square().sum(-1)
        return self.log_weights - 0.5 * (maha + logdet + n * math.log(2 * math.pi)), z

    def _quadratic(self, s2: float):
        """log pi_k + log N(c; mu_k, Sigma_k + s2 I) (up to the constant -n/2 log 2 pi) as a linear function of
        the features (c c^T, c, 1): with P_k = (Sigma_k + s2 I)^-1 the Mahalanobis distance is
        c^T P_k c - 2 mu_k^T P_k c + mu_k^T P_k mu_k. Returns the weights of the three kinds of features:
        (n^2, K), (n, K) and (K,)."""
        K, n = self.lam.shape
        var = self.lam + s2
        P = (self.U / var[:, None, :]) @ self.U.transpose(1, 2)  # (K, n, n)
        Pmu = torch.einsum("kij,kj->ki", P, self.mu)  # (K, n)
        const = (Pmu * self.mu).sum(1) + var.log().sum(1)
        return -0.5 * P.reshape(K, n * n).T, Pmu.T, self.log_weights - 0.5 * const

    def _most_likely(self, c: torch.Tensor, quadratic) -> torch.Tensor:
        """argmax_k of pi_k N(c; mu_k, Sigma_k + s2 I) for coordinates c (N, n): one product with the
        quadratic features, no (N, K, n) residuals; the features of 1024 patches at a time stay in cache
        (3x faster than :meth:`_log_joint` on 6x6 colour patches at K = 100)."""
        quad, lin, const = quadratic
        out = []
        for i in range(0, c.shape[0], 1024):
            ci = c[i : i + 1024]
            features = (ci[:, :, None] * ci[:, None, :]).reshape(len(ci), -1)  # (N, n^2): c c^T
            out.append((features @ quad + ci @ lin + const).argmax(1))
        return torch.cat(out)

    def _flat(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, C, p, p) or (N, d) -> (N, d) float32."""
        return patches.reshape(patches.shape[0], -1).float()

    def patch_log_prob(self, patches: torch.Tensor) -> torch.Tensor:
        """log p(c) of each patch's zero-mean coordinates, (N,) (a density on the zero-mean subspace)."""
        return self._log_prob_coordinates(self._flat(patches) @ self.basis)

    def _log_prob_coordinates(self, c: torch.Tensor) -> torch.Tensor:
        """log p(c) of coordinates c (N, n), CHUNK at a time."""
        whitening = self._whitening(0.0)
        return torch.cat([self._log_joint(c[i : i + CHUNK], whitening)[0].logsumexp(1)
                          for i in range(0, c.shape[0], CHUNK)])

    def patch_score(self, patches: torch.Tensor) -> torch.Tensor:
        """grad_v log p(B^T v), (N, d): B sum_k w_k(c) Sigma_k^-1 (mu_k - c), w the responsibilities."""
        whitening = self._whitening(0.0)
        c = self._flat(patches) @ self.basis
        out = []
        for i in range(0, c.shape[0], CHUNK):
            logj, z = self._log_joint(c[i : i + CHUNK], whitening)
            w = logj.softmax(1)  # (N, K)
            # Sigma_k^-1 (c - mu_k) = U_k diag(lam^-1/2) z_k: the back-projection of all k in one product.
            v = (w[:, :, None] * z * self.lam.rsqrt()).reshape(z.shape[0], -1)  # (N, K n)
            out.append(-(v @ self.U.transpose(1, 2).reshape(-1, self.U.shape[1])))
        return torch.cat(out) @ self.basis.T

    def denoise_patches(self, patches: torch.Tensor, sigma: float, rule: str = "map") -> torch.Tensor:
        """Estimates of clean patches (N, d) from patches under Gaussian noise of std ``sigma``, the DC kept.

        ``rule="map"``: the Wiener filter of the most likely component, Zoran & Weiss's approximate MAP;
        ``"mean"``: the posterior mean sum_k w_k (mu_k + Sigma_k (Sigma_k + s^2 I)^-1 (c - mu_k)), Tweedie's
        estimate for a patch.
        """
        v = self._flat(patches)
        s2 = float(sigma) ** 2
        c = v @ self.basis
        out = []
        if rule == "map":
            quadratic = self._quadratic(s2)
            # Wiener filters G_k = Sigma_k (Sigma_k + s2 I)^-1 = U_k diag(lam / (lam + s2)) U_k^T, (K, n, n).
            G = (self.U * (self.lam / (self.lam + s2))[:, None, :]) @ self.U.transpose(1, 2)
        else:
            whitening = self._whitening(s2)
        for i in range(0, c.shape[0], CHUNK):
            ci = c[i : i + CHUNK]
            if rule == "map":
                k = self._most_likely(ci, quadratic)  # (N,)
                est = torch.empty_like(ci)
                # Patches grouped by their component: one small product per component, no (N, n, n) gather.
                order = k.argsort()
                ks, counts = torch.unique_consecutive(k[order], return_counts=True)
                for kk, rows in zip(ks.tolist(), order.split(counts.tolist())):
                    est[rows] = self.mu[kk] + (ci[rows] - self.mu[kk]) @ G[kk].T
                out.append(est)
            elif rule == "mean":
                logj, z = self._log_joint(ci, whitening)
                # Wiener gain on the whitened residual: lam / (lam + s2) * sqrt(lam + s2) = lam / sqrt(lam + s2).
                gain = self.lam * (self.lam + s2).rsqrt()  # (K, n)
                w = logj.softmax(1)
                v_k = (w[:, :, None] * gain * z).reshape(z.shape[0], -1)  # (N, K n)
                out.append(w @ self.mu + v_k @ self.U.transpose(1, 2).reshape(-1, self.U.shape[1]))
            else:
                raise ValueError(f"rule must be 'map' or 'mean', got {rule!r}")
        dc = v.mean(1, keepdim=True)
        return torch.cat(out) @ self.basis.T + dc

    @torch.no_grad()
    def sample(self, n: int, *, method: str = "exact", steps: int | None = None, variance: str = "beta_tilde",
               eta: float = 0.0, generator: torch.Generator | None = None, callback=None,
               clip: bool = True) -> torch.Tensor:
        """n patches (n, C, p, p): exact draws from the mixture (``method="exact"``; the DC, which the prior
        does not model, set to mid-gray 0.5), or the reverse diffusion of :mod:`restore.priors.sampling` with
        the mixture's exact patch posterior means ("ancestral" or "ddim")."""
        if method != "exact":
            from .sampling import reverse_diffusion

            return reverse_diffusion(self, n, steps=steps, method=method, variance=variance, eta=eta,
                                     generator=generator, callback=callback, clip=clip)
        m = n * self.channel_groups  # channel groups are independent draws (a gray mixture on colour)
        k = torch.multinomial(self.log_weights.exp().cpu(), m, replacement=True, generator=generator).to(self.mu.device)
        z = torch.randn(m, self.mu.shape[1], generator=generator).to(self.mu.device)
        c = self.mu[k] + torch.einsum("nij,nj->ni", self.U[k], self.lam[k].sqrt() * z)  # mu_k + U_k lam_k^1/2 z
        x = (c @ self.basis.T + 0.5).reshape(n, self.channels * self.channel_groups, self.patch, self.patch)
        return x.clamp(0, 1) if clip else x

    # -- whole images ------------------------------------------------------------------------------

    def _bands(self, H: int, W: int) -> list[tuple[int, int]]:
        """Row ranges [r0, r1) of patch positions, about 16k patches each."""
        rows = H - self.patch + 1
        per = max(1, BAND // max(1, W - self.patch + 1))
        return [(r, min(rows, r + per)) for r in range(0, rows, per)]

    def _groups(self, x: torch.Tensor) -> torch.Tensor:
        """(B, g C, H, W) -> (B g, C, H, W): each channel group an image of its own."""
        B, C, H, W = x.shape
        if C != self.channels * self.channel_groups:
            raise RestoreError(f"the GMM prior models {self.channels}-channel patches, the image has {C} channels")
        return x.reshape(B * self.channel_groups, self.channels, H, W)

    def patch_average(self, x: torch.Tensor, sigma: float, rule: str = "map") -> torch.Tensor:
        """Every overlapping p x p patch of x (B, C, H, W) replaced by its estimate under noise ``sigma``
        (:meth:`denoise_patches`), and the estimates averaged back into an image (each pixel the mean of
        the patches that cover it). Under autograd each band of rows is recomputed in the backward pass,
        so memory stays that of one band."""
        import torch.nn.functional as F

        shape = x.shape
        x = self._groups(x.float())
        B, C, H, W = x.shape
        p = self.patch
        if H < p or W < p:
            raise RestoreError(f"the image ({W}x{H}) is smaller than the GMM prior's {p}x{p} patches")

        def band(xb: torch.Tensor) -> torch.Tensor:  # (B, C, h, W) -> sum of its patches' estimates, same shape
            cols = F.unfold(xb, p)  # (B, C p p, L)
            L = cols.shape[-1]
            est = self.denoise_patches(cols.transpose(1, 2).reshape(B * L, -1), sigma, rule)
            return F.fold(est.reshape(B, L, -1).transpose(1, 2), xb.shape[-2:], p)

        total = torch.zeros_like(x)
        for r0, r1 in self._bands(H, W):
            xb = x[:, :, r0 : r1 + p - 1]
            if torch.is_grad_enabled() and xb.requires_grad:
                from torch.utils.checkpoint import checkpoint

                part = checkpoint(band, xb, use_reentrant=False)
            else:
                part = band(xb)
            total = total + F.pad(part, (0, 0, r0, H - (r1 + p - 1)))
        return (total / patch_counts(H, W, p, x)).reshape(shape)

    def coverage(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """How many patches cover each pixel over p^2, (H, W): 1 inside, less within p - 1 of a border."""
        return patch_counts(height, width, self.patch, like) / self.patch**2

    def epll(self, x: torch.Tensor) -> torch.Tensor:
        """Expected patch log likelihood, sum_i log p(P_i x) over every overlapping patch, per image (B,)."""
        import torch.nn.functional as F

        B = x.shape[0]
        x = self._groups(x.float())
        cols = F.unfold(x, self.patch)  # (B g, d, L)
        logp = self.patch_log_prob(cols.transpose(1, 2).reshape(-1, cols.shape[1]))
        return logp.reshape(B, -1).sum(1)

    # -- what the diffusion solvers use (the convention of DDPMPrior) --------------------------------

    def eps_and_x0(self, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_hat, x0_hat) in model space [-1, 1]: x_t / sqrt(alpha_bar) is x0' plus noise of std
        sqrt((1 - alpha_bar) / alpha_bar), i.e. the image (x_t / sqrt(alpha_bar) + 1) / 2 carries noise of
        half that std, which the patch posterior means remove (patch by patch, averaged)."""
        a = self.alpha_bar[t].to(torch.float64)
        noisy = (x_t.float() / a.sqrt().float() + 1) / 2
        sigma = float(((1 - a) / a).sqrt() / 2)
        x0 = 2 * self.patch_average(noisy, sigma, rule="mean") - 1
        eps = (x_t.float() - a.sqrt().float() * x0) / (1 - a).sqrt().float()
        return eps.to(x_t.dtype), x0.to(x_t.dtype)

    # -- files -------------------------------------------------------------------------------------

    def info(self) -> dict:
        run = self.run_info or {}
        return {"family": self.family, "source": self.source, "model": self.model, "channels": self.image_shape[0],
                "patch": self.patch, "components": self.components, "any_size": "yes: a patch prior, any image size",
                "parameters": self.means.numel() + self.covs.numel() + self.components,
                "training_data": run.get("data"), "file_list_hash": run.get("file_list_hash"),
                "training_steps": run.get("iterations_done"), "val_log_likelihood": run.get("val_log_likelihood"),
                "offers": ["patch_log_prob", "patch_score", "epll (expected patch log likelihood)",
                           "denoise_patches (MAP or posterior mean)", "x0_hat (patch-averaged Tweedie)"]}

    def save(self, folder: str | Path, run_info: dict) -> None:
        """``gmm.safetensors`` (log_weights, means, covs in pixel space) and ``run.json``."""
        from .. import io

        folder = Path(folder)
        with io.together():
            io.save_arrays(folder / "gmm.safetensors", {"log_weights": self.log_weights, "means": self.means,
                                                        "covs": self.covs})
            io.write_json(folder / "run.json", {"format": FORMAT, "version": 1, "family": self.family,
                                                "patch": self.patch, "channels": self.channels,
                                                "components": self.components, **run_info})

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "GMMPatchPrior":
        from .. import io
        from .base import read_run

        folder = Path(folder)
        run = read_run(folder, FORMAT)
        path = folder / "gmm.safetensors"
        if not path.is_file():
            raise RestoreError(f"'{folder}' has no gmm.safetensors"
                               + (" yet: the run exports it when EM finishes or stops (continue with --resume)"
                                  if (folder / "checkpoint").is_dir() else ""))
        arrays = io.load_arrays(path)
        prior = cls(arrays["log_weights"], arrays["means"], arrays["covs"], run["patch"], run["channels"])
        prior.run_info = run
        return prior


def patch_counts(H: int, W: int, p: int, like: torch.Tensor) -> torch.Tensor:
    """How many p x p patches cover each pixel of an H x W image, (H, W) like ``like``."""
    rows = torch.minimum(torch.arange(H), torch.arange(H).flip(0)).clamp_max(p - 1) + 1
    rows = torch.minimum(rows, torch.full_like(rows, H - p + 1))
    cols = torch.minimum(torch.arange(W), torch.arange(W).flip(0)).clamp_max(p - 1) + 1
    cols = torch.minimum(cols, torch.full_like(cols, W - p + 1))
    return (rows[:, None] * cols[None, :]).to(like)


# -- fitting: expectation-maximisation -------------------------------------------------------------


def init_mixture(c: torch.Tensor, K: int, generator: torch.Generator, *, rounds: int = 10, reg: float = 1e-6):
    """Starting mixture for EM on coordinates c (N, n), as scikit-learn's GaussianMixture starts: k-means
    (k-means++ seeding, Arthur & Vassilvitskii 2007, then a few Lloyd rounds, on at most 100k patches),
    each cluster's own mean and covariance, weights by cluster size.
    Returns (log_weights (K,), mu (K, n), Sigma (K, n, n)), float64."""
    N, n = c.shape
    sub = c[torch.randperm(N, generator=generator)[: min(N, 100_000)]].double()
    sq = sub.square().sum(1)

    def nearest(centres):  # squared distances to the nearest centre and its index
        d2 = (sq[:, None] - 2 * sub @ centres.T + centres.square().sum(1)[None]).clamp_min(0)
        return d2.min(1)

    centres = sub[torch.randint(len(sub), (1,), generator=generator)]
    for _ in range(1, K):  # k-means++: each next centre drawn with probability proportional to D(x)^2
        d2, _ = nearest(centres)
        pick = torch.multinomial(d2 / d2.sum(), 1, generator=generator) if d2.sum() > 0 else \
            torch.randint(len(sub), (1,), generator=generator)
        centres = torch.cat([centres, sub[pick]])
    for _ in range(rounds):
        _, label = nearest(centres)
        for k in range(K):
            members = sub[label == k]
            if len(members):
                centres[k] = members.mean(0)
    _, label = nearest(centres)
    glob = torch.cov(sub.T)
    logw, mu, cov = torch.empty(K, dtype=torch.float64), torch.empty(K, n, dtype=torch.float64), torch.empty(K, n, n, dtype=torch.float64)
    for k in range(K):
        members = sub[label == k]
        count = len(members)
        logw[k] = math.log(max(count, 1))
        mu[k] = centres[k]
        cov[k] = (torch.cov(members.T) if count > n else glob) + reg * torch.eye(n, dtype=torch.float64)
    return torch.log_softmax(logw, 0), mu, cov


def em_step(c: torch.Tensor, log_weights, mu, cov, *, reg: float = 1e-6, floor: float = 1e-6):
    """One EM iteration (Dempster et al. 1977) on coordinates c (N, n), float32 products with float64 sums.

    The M-step statistics of component k skip the patches whose responsibility r_ik is below ``floor``
    (a patch is explained by a few components; this makes the M-step ~K/few times cheaper and changes
    the sums by less than N * floor). Returns the new (log_weights, mu, cov) and the mean log-likelihood
    per patch under the old mixture.
    """
    K, n = mu.shape
    prior = _coordinate_mixture(log_weights, mu, cov)
    whitening = prior._whitening(0.0)
    cf = c.float()
    r = torch.empty(cf.shape[0], K)  # responsibilities (N, K)
    total = 0.0
    for i in range(0, cf.shape[0], CHUNK):  # E-step
        logj, _ = prior._log_joint(cf[i : i + CHUNK], whitening)  # (chunk, K)
        ll = logj.logsumexp(1, keepdim=True)
        total += float(ll.double().sum())
        r[i : i + CHUNK] = (logj - ll).exp()
    # M-step (Bishop 2006, eqs. 9.24-9.27), a floor of reg on each covariance's diagonal.
    Nk = r.sum(0).double()
    mu_new, cov_new = mu.clone(), cov.clone()
    eye = torch.eye(n, dtype=torch.float64)
    for k in range(K):
        if Nk[k] < n + 1:  # a component with too few patches keeps its old shape
            continue
        rows = (r[:, k] > floor).nonzero()[:, 0]
        ck, rk = cf[rows], r[rows, k, None]
        s1 = (rk * ck).sum(0).double()
        s2 = ((rk * ck).T @ ck).double()
        mu_new[k] = s1 / Nk[k]
        cov_k = s2 / Nk[k] - mu_new[k, :, None] * mu_new[k, None, :]
        cov_new[k] = 0.5 * (cov_k + cov_k.T) + reg * eye
    log_weights_new = torch.log_softmax(Nk.clamp_min(1e-10).log(), 0)
    return log_weights_new, mu_new, cov_new, total / cf.shape[0]


def _coordinate_mixture(log_weights, mu, cov) -> GMMPatchPrior:
    """A GMMPatchPrior-like evaluator of a mixture given directly in coordinates (for EM)."""
    ev = GMMPatchPrior.__new__(GMMPatchPrior)
    torch.nn.Module.__init__(ev)
    lam, U = torch.linalg.eigh(cov.double())
    ev.log_weights, ev.mu = log_weights.float(), mu.float()
    ev.lam, ev.U = lam.clamp_min(1e-10).float(), U.float()
    return ev


def mean_log_likelihood(c: torch.Tensor, log_weights, mu, cov) -> float:
    """Mean log p(c) per patch of coordinates c (N, n) under a mixture in coordinates."""
    return float(_coordinate_mixture(log_weights, mu, cov)._log_prob_coordinates(c.float()).double().mean())


def to_pixels(log_weights, mu, cov, patch: int, channels: int, betas=None) -> GMMPatchPrior:
    """The GMMPatchPrior of a mixture fitted in coordinates: pixel-space means B mu and covariances B Sigma B^T."""
    B = helmert_basis(channels * patch * patch)
    return GMMPatchPrior(log_weights, mu.double() @ B.T, B @ cov.double() @ B.T, patch, channels, betas)


def sample_patches(patch_set, count: int, seed: int, *, dequantise: bool = True) -> torch.Tensor:
    """``count`` random patches (count, d) from a :class:`restore.data.PatchSet`, flipped and turned, with
    uniform dequantisation noise of one 8-bit level (so that exactly flat patches have a density)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, count, 100_000):
        x = patch_set.batch(min(100_000, count - start), g)
        if dequantise:
            x = x + (torch.rand(x.shape, generator=g) - 0.5) / 255
        out.append(x.reshape(len(x), -1))
    return torch.cat(out)


def train_gmm(*, data: str, out, patch: int = 8, components: int = 200, patches: int = 400_000,
              iterations: int = 30, channels: int | None = None, seed: int = 0, max_minutes: float | None = None,
              resume: bool = False, tol: float = 1e-4, data_root=None, log=print) -> dict:
    """Fit a GMMPatchPrior by EM to ``patches`` random patches of a folder of photographs (or a named set)
    and write it to ``out``: gmm.safetensors, run.json, log.jsonl (the log-likelihood per iteration, of the
    training patches and of patches of held-out images) and train_digests.txt.

    Every iteration checkpoints atomically (``out/checkpoint``); ``resume`` continues from it, and a
    ``max_minutes`` budget stops after the iteration that spends it. EM stops early when the training
    log-likelihood gains less than ``tol`` (relative) in an iteration.
    """
    from tqdm.auto import tqdm

    from .. import data as datasets
    from .. import io
    from ..training import save_checkpoint

    if patch < 2 or components < 1 or patches < 1 or iterations < 1:
        raise RestoreError("--patch must be at least 2, and --components, --patch-count and --steps positive")
    out = Path(out)
    t_start = time.monotonic()
    ds = datasets.patch_training_data(data, patch=patch, channels=channels, seed=seed, root=data_root)
    C = ds["train"].channels
    d = C * patch * patch
    if components * (d + 1) > patches:
        raise RestoreError(f"{components} components of {d}-value patches need more than {patches} patches "
                           f"(at least {components * (d + 1)}); pass a larger --patch-count or fewer --components")
    B = helmert_basis(d).float()
    c = sample_patches(ds["train"], patches, seed) @ B  # (N, n)
    val_set = ds.get("val_set")
    c_val = sample_patches(val_set, 20_000, seed + 1) @ B if val_set is not None else None
    run = {"data": ds["name"], "file_list_hash": ds["file_list_hash"], "patch": patch, "channels": C,
           "components": components, "patches": patches, "iterations": iterations, "seed": seed,
           "train_images": len(ds["train"]), "dequantised": True, "reg": 1e-6}
    ckpt = out / "checkpoint"
    if resume:
        meta = json.loads((ckpt / "checkpoint.json").read_text()) if (ckpt / "checkpoint.json").is_file() else None
        if meta is None or meta.get("family") != "gmm":
            raise RestoreError(f"'{out}' holds no gmm checkpoint to resume")
        first = meta.get("run", {})
        changed = [k for k in ("data", "file_list_hash", "patch", "channels", "components", "patches", "seed")
                   if k in first and first[k] != run[k]]
        if changed:
            raise RestoreError(f"--resume: the run in '{out}' was started with other options ({', '.join(changed)}); "
                               "resume with the original ones (its run.json)")
        saved = io.load_arrays(ckpt / meta["tensors"])
        logw, mu, cov = saved["log_weights"].double(), saved["mu"].double(), saved["cov"].double()
        start, minutes_before = meta["step"], meta.get("minutes_total", 0.0)
        history = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
        history = [h for h in history if h["iteration"] <= start]
    else:
        out.mkdir(parents=True, exist_ok=True)
        logw, mu, cov = init_mixture(c, components, torch.Generator().manual_seed(seed))
        start, minutes_before, history = 0, 0.0, []
        datasets.write_training_digests(out, ds)
    bar = tqdm(total=iterations, initial=start, desc="gmm EM", unit="iteration", disable=None)
    finished, stopped = start >= iterations, False
    it = start
    while not finished:
        t0 = time.perf_counter()
        logw, mu, cov, ll = em_step(c, logw, mu, cov)
        it += 1
        record = {"iteration": it, "train_log_likelihood": round(ll, 4), "seconds": round(time.perf_counter() - t0, 2)}
        if c_val is not None:
            record["val_log_likelihood"] = round(mean_log_likelihood(c_val, logw, mu, cov), 4)
        history.append(record)
        minutes = minutes_before + (time.monotonic() - t_start) / 60
        with io.atomic_write(out / "log.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(h) + "\n" for h in history))
        save_checkpoint(ckpt, {"log_weights": logw, "mu": mu, "cov": cov},
                        {"family": "gmm", "step": it, "minutes_total": round(minutes, 2), "run": run})
        bar.update(1)
        bar.set_postfix(ll=f"{ll:.2f}", val=f"{record.get('val_log_likelihood', float('nan')):.2f}")
        gain = (history[-1]["train_log_likelihood"] - history[-2]["train_log_likelihood"]) if len(history) > 1 else None
        finished = it >= iterations or (gain is not None and abs(gain) < tol * abs(history[-2]["train_log_likelihood"]))
        if not finished and max_minutes is not None and time.monotonic() - t_start > 60 * max_minutes:
            stopped = True
            break
    bar.close()
    minutes = minutes_before + (time.monotonic() - t_start) / 60
    prior = to_pixels(logw, mu, cov, patch, C)
    final = history[-1] if history else {}
    summary = {**run, "iterations_done": it, "minutes_total": round(minutes, 2), "finished": finished,
               "train_log_likelihood": final.get("train_log_likelihood"),
               "val_log_likelihood": final.get("val_log_likelihood")}
    prior.save(out, summary)
    log(f"{out}: {it} EM iterations, " + ("finished" if finished else "stopped by the time budget (continue with --resume)")
        + f", {minutes:.1f} min, log-likelihood {final.get('train_log_likelihood')} per patch"
        + (f" (held-out {final['val_log_likelihood']})" if "val_log_likelihood" in final else ""))
    return {**summary, "stopped": stopped}
