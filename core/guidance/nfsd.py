"""NFSD, Noise-Free Score Distillation (seed 002; METHODS.md "NFSD").

The score splits into a condition term and a domain term:

    dC = eps_y - eps_0
    dD = eps_0              if t <  200   (little noise is left in eps_0 there)
    dD = eps_0 - eps_neg    if t >= 200   (eps_neg: the prediction for a negative prompt)
    g  = w(t) * (dD + s * dC),   default s = 7.5   -- note: no "- eps" term

All three branches [cond, uncond, neg] are evaluated in one UNet call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..priors.base import DiffusionPrior
from .base import Guidance, GuidanceConfig, GuidanceContext

NEGATIVE_PROMPT = "unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, dark, low-resolution, gloomy"


@dataclass(frozen=True)
class NFSDConfig(GuidanceConfig):
    guidance_scale: float = 7.5
    negative_prompt: str = NEGATIVE_PROMPT  # eps_neg's prompt (the paper's list; an artist's negative prompt replaces it)
    domain_cutoff: int = 200  # timesteps below it use dD = eps_0


def nfsd_update(eps_y: Tensor, eps_0: Tensor, eps_neg: Tensor, t: Tensor, w: Tensor, scale: float, cutoff: int) -> Tensor:
    """g = w(t) * (dD + s * dC); tensors [B, C, h, w], t [B], w [B, 1, 1, 1]."""
    d_c = eps_y - eps_0
    low_noise = (t < cutoff).reshape(-1, 1, 1, 1)
    d_d = torch.where(low_noise, eps_0, eps_0 - eps_neg)
    return w * (d_d + scale * d_c)


class NFSD(Guidance):
    config: NFSDConfig

    def __init__(self, prior: DiffusionPrior, config: NFSDConfig = NFSDConfig()) -> None:
        super().__init__(prior, config)

    @property
    def unconditional_prompt(self) -> str:
        """eps_0 is the empty prompt's prediction; the negative prompt is the separate eps_neg term."""
        return ""

    @torch.no_grad()
    def update(self, ctx: GuidanceContext) -> tuple[Tensor, dict[str, Tensor]]:
        c: NFSDConfig = self.config
        embeddings = self.conditions(ctx.prompts, extra=(c.negative_prompt,))  # [3, B, L, D]
        eps_y, eps_0, eps_neg = self.prior.predict_noise(ctx.z_t, ctx.t, embeddings, ctx.cameras)
        return nfsd_update(eps_y, eps_0, eps_neg, ctx.t, ctx.w, c.guidance_scale, c.domain_cutoff), {}
