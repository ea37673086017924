"""Draw images from a prior with DDIM and classifier-free guidance (for looking at what a prior knows)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..cameras import Cameras
from .diffusers_prior import DiffusersPrior


@torch.no_grad()
def sample(prior: DiffusersPrior, prompts: list[str], steps: int = 50, guidance_scale: float = 3.0, seed: int = 0, cameras: Cameras | None = None) -> Tensor:
    """Images [B, 3, H, W] in [0, 1], one per prompt (and, for a camera-conditioned prior, per camera)."""
    from diffusers import DDIMScheduler

    # `predict_noise` returns eps for every prior (v-prediction converted), so DDIM runs in epsilon mode.
    scheduler = DDIMScheduler.from_config(prior.scheduler_config, clip_sample=False, set_alpha_to_one=False, prediction_type="epsilon")
    scheduler.set_timesteps(steps, device=prior.device)
    B = len(prompts)
    channels = prior.unet.config.in_channels
    size = prior.unet.config.sample_size
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn((B, channels, size, size), generator=generator).to(prior.device)
    embeddings = torch.stack([prior.text_embeddings(prompts), prior.text_embeddings([""] * B)])  # [2, B, L, D]
    for t in scheduler.timesteps:
        eps_y, eps_0 = prior.predict_noise(z, t.expand(B), embeddings, cameras)
        eps = eps_0 + guidance_scale * (eps_y - eps_0)
        z = scheduler.step(eps, t, z, eta=0.0).prev_sample
    return prior.decode(z)
