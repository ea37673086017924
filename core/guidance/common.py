"""Pieces every score-distillation method shares: weighting, CFG, and injecting an update into autograd."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Weighting = Literal["sds", "uniform"]


def weight(alphas_cumprod: Tensor, t: Tensor, kind: Weighting) -> Tensor:
    """w(t) [B, 1, 1, 1]: `sds` is sigma_t^2 = 1 - abar_t (the default), `uniform` is 1."""
    if kind == "sds":
        return (1 - alphas_cumprod[t]).reshape(-1, 1, 1, 1)
    if kind == "uniform":
        return torch.ones(t.shape[0], 1, 1, 1, device=alphas_cumprod.device)
    raise ValueError(f"weighting must be 'sds' or 'uniform', got '{kind}'")


def cfg(eps_y: Tensor, eps_0: Tensor, scale: float) -> Tensor:
    """eps_cfg(s) = eps_0 + s * (eps_y - eps_0)."""
    return eps_0 + scale * (eps_y - eps_0)


def inject(z: Tensor, g: Tensor, clip: float | None = None) -> Tensor:
    """A loss whose gradient with respect to z is g / B, without the UNet Jacobian.

    loss = 0.5 * ||z - (z - g).detach()||^2 / B, so d loss / d z = g / B; autograd carries it on through
    the VAE encoder and the renderer to the 3D parameters.
    """
    g = torch.nan_to_num(g.detach(), nan=0.0, posinf=0.0, neginf=0.0)
    if clip is not None:
        g = g.clamp(-clip, clip)
    target = (z - g).detach()
    return 0.5 * ((z - target) ** 2).sum() / z.shape[0]
