"""SDS, DreamFusion's Score Distillation Sampling (seed 001; METHODS.md "SDS").

    g = w(t) * (eps_cfg(s) - eps),    eps_cfg(s) = eps_0 + s * (eps_y - eps_0),    default s = 100

`eps_y` and `eps_0` come from one batched UNet call ([cond, uncond]); the UNet Jacobian is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..priors.base import DiffusionPrior
from .base import Guidance, GuidanceConfig, GuidanceContext
from .common import cfg


@dataclass(frozen=True)
class SDSConfig(GuidanceConfig):
    guidance_scale: float = 100.0


def sds_update(eps_y: Tensor, eps_0: Tensor, eps: Tensor, w: Tensor, scale: float) -> Tensor:
    """g = w(t) * (eps_cfg(s) - eps); every tensor [B, C, h, w] except w [B, 1, 1, 1]."""
    return w * (cfg(eps_y, eps_0, scale) - eps)


class SDS(Guidance):
    config: SDSConfig

    def __init__(self, prior: DiffusionPrior, config: SDSConfig = SDSConfig()) -> None:
        super().__init__(prior, config)

    @torch.no_grad()
    def update(self, ctx: GuidanceContext) -> tuple[Tensor, dict[str, Tensor]]:
        eps_y, eps_0 = self.prior.predict_noise(ctx.z_t, ctx.t, self.conditions(ctx.prompts), ctx.cameras)  # one call: [cond, uncond]
        return sds_update(eps_y, eps_0, ctx.eps, ctx.w, self.config.guidance_scale), {}
