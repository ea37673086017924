"""SDS, DreamFusion's Score Distillation Sampling (seed 001; METHODS.md "SDS").

    g = w(t) * (eps_cfg(s) - eps),    eps_cfg(s) = eps_0 + s * (eps_y - eps_0),    default s = 100

`eps_y` and `eps_0` come from one batched UNet call ([cond, uncond]); the UNet Jacobian is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..priors.base import DiffusionPrior, add_noise
from .common import Weighting, cfg, inject, weight
from .timesteps import TimestepSchedule


@dataclass(frozen=True)
class SDSConfig:
    guidance_scale: float = 100.0  # s
    weighting: Weighting = "sds"  # w(t) = sigma_t^2
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)
    grad_clip: float | None = None  # clamp g elementwise (None: off)


@dataclass
class GuidanceOutput:
    loss: Tensor  # scalar; d loss / d images is the method's update
    t: Tensor  # [B] timesteps used
    update_norm: float  # ||g|| averaged over the batch
    losses: dict[str, float] = field(default_factory=dict)  # the method's own diagnostics


def sds_update(eps_y: Tensor, eps_0: Tensor, eps: Tensor, w: Tensor, scale: float) -> Tensor:
    """g = w(t) * (eps_cfg(s) - eps); every tensor [B, C, h, w] except w [B, 1, 1, 1]."""
    return w * (cfg(eps_y, eps_0, scale) - eps)


class SDS:
    def __init__(self, prior: DiffusionPrior, config: SDSConfig = SDSConfig()) -> None:
        self.prior, self.config = prior, config

    def __call__(
        self,
        images: Tensor,  # [B, 3, H, W] in [0, 1], differentiable
        prompts: list[str],  # [B] one prompt per image (view-dependent prompts differ per image)
        step: int,
        steps: int,
        generator: torch.Generator | None = None,
        t: Tensor | None = None,  # [B] override the schedule (tests)
        eps: Tensor | None = None,  # [B, C, h, w] override the noise (tests)
    ) -> GuidanceOutput:
        prior, c = self.prior, self.config
        z = prior.encode(images)  # [B, C, h, w]
        B = z.shape[0]
        if t is None:
            t = c.timesteps.sample(step, steps, B, prior.num_train_timesteps, generator)
        t = t.to(prior.device)
        if eps is None:
            eps = torch.randn(z.shape, generator=generator).to(z.device)
        with torch.no_grad():
            z_t = add_noise(prior.alphas_cumprod, z.detach(), eps, t)
            embeddings = torch.stack([prior.text_embeddings(prompts), prior.text_embeddings([""] * B)])  # [2, B, L, D]
            eps_y, eps_0 = prior.predict_noise(z_t, t, embeddings)  # one UNet call, [cond, uncond]
            g = sds_update(eps_y, eps_0, eps, weight(prior.alphas_cumprod, t, c.weighting), c.guidance_scale)
        return GuidanceOutput(loss=inject(z, g, c.grad_clip), t=t, update_norm=float(g.flatten(1).norm(dim=1).mean()))
