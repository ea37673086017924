"""SSD, SteinDreamer's Stein Score Distillation (seed 000; METHODS.md "SSD").

Stein's identity for q(z_t | z) = N(alpha_t z, sigma_t^2 I) gives, for any scalar baseline phi(z_t),
the zero-mean control variate (Gaussian integration by parts: E_eps[h] = 0)

    h = eps * phi(z_t) - sigma_t * grad_{z_t} phi(z_t)

and the update

    g = w(t) * (eps_cfg(s) - mu * h),   mu shaped like z, initialised to ones, learned.

With phi = 1 and mu = 1, h = eps and g is exactly SDS. The baseline compares a frozen monocular depth
estimate of the (decoded) noisy image with the renderer's depth:

    phi = -lambda_phi * l(D_est(decode(z_t)), D_render),   l = 1 - Pearson (depth) or 1 - cosine (normals)

(on latent priors `decode` is by default a fitted linear latent->RGB map: see SSDConfig.baseline_decode)

averaged over the rendered alpha mask. mu is trained, alternating with the 3D update, to minimise the
second moment ||g||^2 (the mean of g does not depend on mu): one Adam step per iteration, h detached.

Without a renderer (2D distillation) there is no rendered depth; the estimator's depth of the clean
image stands in for D_render there, with a full mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..priors.base import DiffusionPrior, alpha_sigma
from .base import Guidance, GuidanceConfig, GuidanceContext
from .common import cfg
from .depth import disparity, load_depth_estimator, masked_normal_loss, masked_pearson_loss

Baseline = Callable[[Tensor, GuidanceContext], Tensor]  # (z_t [B, C, h, w] requiring grad, ctx) -> phi [B]


@dataclass(frozen=True)
class SSDConfig(GuidanceConfig):
    guidance_scale: float = 100.0  # SteinDreamer builds on SDS's setting
    lambda_phi: float = 1e-2
    depth_loss: Literal["pearson", "normal"] = "pearson"
    depth_estimator: str = "auto"  # "auto": builtin for the builtin prior, else DEFAULT_DPT_ID; or an id / folder
    mu_lr: float = 1e-2  # Adam on mu
    # How phi sees z_t on a latent prior: "vae" decodes with the full VAE decoder (METHODS.md literally;
    # its forward and backward cost more than the UNet call at 512 px), "linear" with a least-squares
    # latent->RGB map fitted to the VAE (linear_decoder.py). Stein's identity holds for any phi, so the
    # update stays unbiased either way; only the variance removed can differ. Pixel priors: no decoder.
    baseline_decode: Literal["linear", "vae"] = "linear"


def control_variate(phi: Tensor, grad_phi: Tensor, eps: Tensor, sigma: Tensor) -> Tensor:
    """h = eps * phi(z_t) - sigma_t * grad_{z_t} phi(z_t); phi [B], the rest [B, C, h, w] / sigma [B, 1, 1, 1]."""
    return eps * phi.reshape(-1, 1, 1, 1) - sigma * grad_phi


def ssd_update(eps_c: Tensor, h: Tensor, mu: Tensor, w: Tensor) -> Tensor:
    """g = w(t) * (eps_cfg - mu * h)."""
    return w * (eps_c - mu * h)


class SSD(Guidance):
    config: SSDConfig

    def __init__(self, prior: DiffusionPrior, config: SSDConfig = SSDConfig(), baseline: Baseline | None = None) -> None:
        super().__init__(prior, config)
        C, size = prior.unet.config.in_channels, prior.unet.config.sample_size
        self.mu = torch.ones(C, size, size, device=prior.device, requires_grad=True)  # shaped like z
        self.optimiser = torch.optim.Adam([self.mu], lr=config.mu_lr)
        if baseline is None:
            spec = config.depth_estimator
            if spec == "auto":
                from ..priors.loading import BUILTIN_FOLDER
                from .depth import DEFAULT_DPT_ID

                spec = "builtin" if prior.folder == BUILTIN_FOLDER else DEFAULT_DPT_ID
            self.estimator = load_depth_estimator(spec, prior.device, dtype=prior.dtype)
            baseline = self.depth_baseline
        self.baseline = baseline

    def depth_baseline(self, z_t: Tensor, ctx: GuidanceContext) -> Tensor:
        """phi = -lambda_phi * l(D_est(decode(z_t)), D_render), over the rendered alpha mask; [B]."""
        decode = self.prior.decode_linear if self.config.baseline_decode == "linear" else self.prior.decode
        estimate = self.estimator(decode(z_t))  # disparity [B, 1, H, W]
        if ctx.depth is not None:
            mask = (ctx.alpha if ctx.alpha is not None else (ctx.depth > 0).float()).detach()
            reference = disparity(ctx.depth).detach()
        else:
            with torch.no_grad():
                reference = self.estimator(ctx.images.detach())
            mask = torch.ones_like(reference)
        estimate = torch.nn.functional.interpolate(estimate, reference.shape[-2:], mode="bilinear", align_corners=False)
        loss = masked_pearson_loss if self.config.depth_loss == "pearson" else masked_normal_loss
        return -self.config.lambda_phi * loss(estimate, reference, mask)

    def phi_and_grad(self, z_t: Tensor, ctx: GuidanceContext) -> tuple[Tensor, Tensor]:
        """phi(z_t) [B] and grad_{z_t} phi [B, C, h, w] by autograd through the frozen estimator (and decoder)."""
        with torch.enable_grad():
            z = z_t.detach().requires_grad_(True)
            phi = self.baseline(z, ctx)
            if not phi.requires_grad:  # a constant baseline: grad phi = 0
                return phi.detach(), torch.zeros_like(z)
            (grad,) = torch.autograd.grad(phi.sum(), z, allow_unused=True)
        return phi.detach(), torch.zeros_like(z) if grad is None else grad.detach()

    def update(self, ctx: GuidanceContext) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            eps_y, eps_0 = self.prior.predict_noise(ctx.z_t, ctx.t, self.conditions(ctx.prompts), ctx.cameras)
            eps_c = cfg(eps_y, eps_0, self.config.guidance_scale)
        phi, grad_phi = self.phi_and_grad(ctx.z_t, ctx)
        _, sigma = alpha_sigma(self.prior.alphas_cumprod, ctx.t)
        h = control_variate(phi, grad_phi, ctx.eps, sigma)
        ctx.eps_cfg, ctx.control_variate = eps_c, h
        g = ssd_update(eps_c, h, self.mu.detach(), ctx.w)
        return g, {"phi": phi.mean().detach()}

    def step_auxiliary(self, ctx: GuidanceContext) -> dict[str, Tensor]:
        """One Adam step on mu minimising the second moment of g (eps_cfg and h detached)."""
        assert ctx.eps_cfg is not None and ctx.control_variate is not None, "SSD's step_auxiliary runs after its update"
        g = ssd_update(ctx.eps_cfg, ctx.control_variate, self.mu, ctx.w)
        loss = g.pow(2).sum() / g.shape[0]
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return {"ssd_second_moment": loss.detach()}
