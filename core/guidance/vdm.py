"""VDM + DCA, DreamMapping's Variational Distribution Mapping with a Distribution Coefficient Annealing
(seed 003; METHODS.md "VDM + DCA").

Rendered images are modelled as a learned degradation of the prior's outputs. M_psi, a small U-Lite-like
U-Net, learns to map the guided prediction to the noise that was actually added:

    L_op = || M_psi(eps_cfg.detach()) - eps ||^2             (Adam, lr 0.01; no UNet Jacobian)
    lambda_t = 1 if t > 300 else 1 - abar_t                   (DCA)
    g = w(t) * (eps_cfg(7.5) - lambda_t * M_psi(eps_cfg))     (M_psi's output detached)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..priors.base import DiffusionPrior
from .base import Guidance, GuidanceConfig, GuidanceContext
from .common import cfg
from .ulite import ULite


@dataclass(frozen=True)
class VDMConfig(GuidanceConfig):
    guidance_scale: float = 7.5
    dca_cutoff: int = 300  # lambda_t = 1 above it, 1 - abar_t at or below it
    lr: float = 0.01
    # M_psi's widths; None picks (40, 80, 160, 320) (1.08 M parameters) for latent priors and
    # (16, 32, 64) (49 k) for pixel priors such as the builtin one.
    channels: tuple[int, ...] | None = None


def dca_lambda(alphas_cumprod: Tensor, t: Tensor, cutoff: int) -> Tensor:
    """lambda_t [B, 1, 1, 1]: 1 for t > cutoff, 1 - abar_t otherwise."""
    return torch.where(t > cutoff, torch.ones_like(alphas_cumprod[t]), 1 - alphas_cumprod[t]).reshape(-1, 1, 1, 1)


def vdm_update(eps_c: Tensor, m_out: Tensor, lam: Tensor, w: Tensor) -> Tensor:
    """g = w(t) * (eps_cfg - lambda_t * M_psi(eps_cfg))."""
    return w * (eps_c - lam * m_out)


class VDM(Guidance):
    config: VDMConfig

    def __init__(self, prior: DiffusionPrior, config: VDMConfig = VDMConfig()) -> None:
        super().__init__(prior, config)
        channels = config.channels or ((40, 80, 160, 320) if prior.latent else (16, 32, 64))
        in_channels = prior.unet.config.in_channels
        self.m_psi = ULite(in_channels, channels).to(prior.device)
        self.optimiser = torch.optim.Adam(self.m_psi.parameters(), lr=config.lr)

    def update(self, ctx: GuidanceContext) -> tuple[Tensor, dict[str, Tensor]]:
        c: VDMConfig = self.config
        with torch.no_grad():
            eps_y, eps_0 = self.prior.predict_noise(ctx.z_t, ctx.t, self.conditions(ctx.prompts), ctx.cameras)
            eps_c = cfg(eps_y, eps_0, c.guidance_scale)
            m_out = self.m_psi(eps_c)
            lam = dca_lambda(self.prior.alphas_cumprod, ctx.t, c.dca_cutoff)
        ctx.eps_cfg = eps_c
        return vdm_update(eps_c, m_out, lam, ctx.w), {"lambda_t": lam.mean()}

    def step_auxiliary(self, ctx: GuidanceContext) -> dict[str, Tensor]:
        """One Adam step on L_op = || M_psi(eps_cfg) - eps ||^2."""
        assert ctx.eps_cfg is not None, "VDM's step_auxiliary runs after its update"
        loss = (self.m_psi(ctx.eps_cfg) - ctx.eps).pow(2).mean()
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return {"vdm_loss": loss.detach()}
