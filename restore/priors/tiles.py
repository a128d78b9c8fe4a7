"""Overlapping tiles: a fully convolutional network on an image too large to run on at once.

The image is cut into ``tile`` x ``tile`` windows that overlap by ``overlap`` pixels, the network runs on
each, and the outputs are blended with weights that ramp linearly across every overlap, so no seam is a
hard edge. This is the tiled inference that patch-based super-resolution and diffusion codes use on
large images (e.g. the tiled VAE decoding of diffusers); the result differs from the untiled one only
where a window's edge cuts the network's receptive field, and through the network's GroupNorm
statistics, which are the window's instead of the whole image's.

Memory is bounded by one window: without gradients each window's activations are freed before the next
one runs; with gradients (DPS differentiates through the network) each window is checkpointed
(``torch.utils.checkpoint``), so its activations are recomputed in the backward pass instead of held.
"""

from __future__ import annotations

import torch


def starts(length: int, tile: int, overlap: int) -> list[int]:
    """First pixels of the windows along an axis of ``length``: stride ``tile - overlap``, the last window
    flush with the end."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    out = list(range(0, length - tile, stride))
    return out + [length - tile]


def _ramp(n: int, start: int, length: int, overlap: int, like: torch.Tensor) -> torch.Tensor:
    """Blending weights along one axis of a window: 1 inside, rising linearly over ``overlap`` pixels at an
    edge that another window overlaps (never at the image's own border)."""
    k = torch.arange(n, dtype=like.dtype, device=like.device)
    w = torch.ones(n, dtype=like.dtype, device=like.device)
    if overlap > 0:
        if start > 0:
            w = torch.minimum(w, (k + 1) / (overlap + 1))
        if start + n < length:
            w = torch.minimum(w, (n - k) / (overlap + 1))
    return w


def tiled(fn, x: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """fn(x) computed on overlapping ``tile`` x ``tile`` windows of x (N, C, H, W) and blended.

    ``fn`` maps (N, C, h, w) to a tensor of the same shape, for any h, w. With tile >= H and W this is
    fn(x) itself. Gradients flow through (each window is checkpointed when x requires them).
    """
    N, C, H, W = x.shape
    if H <= tile and W <= tile:
        return fn(x)
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must lie in [0, tile), got tile={tile}, overlap={overlap}")
    checkpoint = torch.is_grad_enabled() and x.requires_grad
    out = x.new_zeros(N, C, H, W)
    total = x.new_zeros(1, 1, H, W)
    h, w = min(tile, H), min(tile, W)  # every window's size
    for i in starts(H, tile, overlap):
        for j in starts(W, tile, overlap):
            piece = x[..., i : i + h, j : j + w]
            if checkpoint:
                y = torch.utils.checkpoint.checkpoint(fn, piece, use_reentrant=False)
            else:
                y = fn(piece)
            weight = _ramp(h, i, H, overlap, x)[:, None] * _ramp(w, j, W, overlap, x)[None, :]
            out[..., i : i + h, j : j + w] += weight * y
            total[..., i : i + h, j : j + w] += weight
    return out / total
