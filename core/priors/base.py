"""The one interface every score-distillation method talks to: a frozen text-to-image diffusion prior.

Notation (METHODS.md): `x` rendered images in [0, 1]; `z` the prior's input space; `abar_t` the DDPM
schedule; `z_t = alpha_t * z + sigma_t * eps` with `alpha_t = sqrt(abar_t)`, `sigma_t = sqrt(1 - abar_t)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..cameras import ViewPromptRule
    from ..request import OrbitRange
    from ..stage1.defaults import PriorDefaults


@runtime_checkable
class DiffusionPrior(Protocol):
    device: torch.device
    num_train_timesteps: int  # T
    alphas_cumprod: Tensor  # [T] abar_t, float32, on `device`
    prediction_type: str  # "epsilon" or "v_prediction"; `predict_noise` always returns eps
    image_size: int  # the resolution `encode` resizes rendered images to
    latent: bool  # True when z is a VAE latent (Stable Diffusion), False for pixel priors
    dtype: torch.dtype  # the UNet's weights (float16 on CUDA by default)
    unet: Any  # diffusers' UNet2DConditionModel, frozen; VSD adds its LoRA to it
    source: str  # how it was named: "builtin", a Hub id or a folder (the manifest records it)
    folder: Path  # the weights on disk (hashed into the manifest)
    camera_conditioned: bool  # reads camera features through the UNet's class embedding (camera_conditioning.py)
    view_rule: ViewPromptRule | None  # the view words its captions used (builtin-format priors), else None
    trained_orbit: OrbitRange | None  # the cameras its training rendered from (stage one's default orbit), else None
    scheduler_config: dict[str, Any]  # its diffusers scheduler's config (samplers start from it)

    @property
    def defaults(self) -> PriorDefaults:
        """What stage one uses on this prior where a request leaves a field unset (guidance scale per
        method, timesteps, regularisers, orbit): one typed object, stage1/defaults.py."""
        ...

    def encode(self, x: Tensor) -> Tensor:
        """x [B, 3, H, W] in [0, 1] -> z [B, C, h, w]; differentiable with respect to x."""
        ...

    def decode(self, z: Tensor) -> Tensor:
        """z [B, C, h, w] -> x [B, 3, H, W] in [0, 1]; differentiable with respect to z."""
        ...

    def decode_linear(self, z: Tensor) -> Tensor:
        """An approximate, nearly free `decode` (exact for pixel priors)."""
        ...

    def unknown_words(self, prompt: str) -> list[str]:
        """The prompt's words the tokenizer cannot represent (only word-level tokenizers have any)."""
        ...

    def text_embeddings(self, prompts: list[str]) -> Tensor:
        """[K, L, D] prompt embeddings, cached per prompt string; "" is the unconditional prompt."""
        ...

    def predict_noise(self, z_t: Tensor, t: Tensor, embeddings: Tensor, cameras=None) -> Tensor:
        """eps [K, B, C, h, w] for z_t [B, C, h, w] at t [B] under K embeddings [K, L, D] or [K, B, L, D], in one UNet call.

        `cameras` (one per image) condition camera-conditioned priors (camera_conditioning.py); others ignore them."""
        ...


def alpha_sigma(alphas_cumprod: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t), shaped [B, 1, 1, 1] for broadcasting."""
    abar = alphas_cumprod[t].reshape(-1, 1, 1, 1)
    return abar.sqrt(), (1 - abar).sqrt()


def add_noise(alphas_cumprod: Tensor, z: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    """z_t = alpha_t * z + sigma_t * eps."""
    alpha, sigma = alpha_sigma(alphas_cumprod, t)
    return alpha * z + sigma * eps


def v_to_eps(alphas_cumprod: Tensor, v: Tensor, z_t: Tensor, t: Tensor) -> Tensor:
    """eps = alpha_t * v + sigma_t * z_t, for v-prediction priors (Salimans & Ho)."""
    alpha, sigma = alpha_sigma(alphas_cumprod, t)
    return alpha * v + sigma * z_t
