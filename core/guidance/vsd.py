"""VSD, ProlificDreamer's Variational Score Distillation (seeds 001, 004; METHODS.md "VSD").

A second noise predictor eps_phi(z_t, t, y, c) models the distribution of *rendered* images: a rank-4
LoRA on the attention projections of the prior's own UNet (base weights shared and frozen) plus a
camera embedding (the flattened 4x4 camera-to-world matrix through a small MLP) added to the UNet's
timestep embedding, and, as ProlificDreamer's `lora_unet.py` does, a learned vector per shading mode
added there too (shaded and textureless renders; albedo adds none): c = (camera, shading). Both start
at zero, so eps_phi starts as the pretrained model (ProlificDreamer draws the shading vectors from
N(0, 1); at zero the first steps' eps_phi is not perturbed by an offset it has not learned yet).

    g = w(t) * (eps_cfg(7.5) - eps_phi(z_t, t, y, c))

then one LoRA step on a detached batch, alternating with the 3D update:

    t', eps' fresh;  z' = alpha_t' z.detach() + sigma_t' eps'
    loss = || eps_phi(z', t', y, c_drop) - eps' ||^2    (the v-target for v-prediction priors)

with the whole batch's camera replaced by zeros with probability 0.1. eps_phi sees the bare prompt y,
without the view words the pretrained branch gets (as ProlificDreamer's and threestudio's code do).
Several particles (independent 3D models) share one eps_phi: render them into the same batch.

The adapter is switched with peft's enable / disable, and peft's disable also sets the LoRA tensors'
requires_grad to False, after which autograd accumulates nothing into them: the LoRA step runs its
forward *and* backward with the adapter on (`lora_step`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from ..device import to_device
from ..priors.base import DiffusionPrior, add_noise, alpha_sigma
from ..priors.camera_conditioning import camera_features
from .base import Guidance, GuidanceConfig, GuidanceContext
from .common import cfg

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # the attention projections of diffusers' UNet
ADAPTER = "vsd"


@dataclass(frozen=True)
class VSDConfig(GuidanceConfig):
    guidance_scale: float = 7.5
    lora_rank: int = 4
    lr: float = 1e-4  # AdamW, for the LoRA and the camera embedding
    camera_dropout: float = 0.1
    # Renders of each step's batch that the LoRA step fits, drawn at random (None: all of them). Each
    # is an unbiased sample of the same loss; fewer makes the LoRA step, as costly as the 3D render on
    # a small prior, proportionally cheaper.
    lora_batch: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lora_batch is not None and self.lora_batch < 1:
            raise ValueError(f"VSDConfig.lora_batch must be at least 1 (or None: the whole batch), got {self.lora_batch}")


class CameraEmbedding(nn.Module):
    """Flattened 4x4 camera-to-world matrix [B, 16] -> a timestep-embedding offset [B, D]; starts at zero."""

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        first, out = nn.Linear(16, hidden), nn.Linear(hidden, dim)  # drawn in this order (the seed's stream)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(first, nn.SiLU(), out)

    def forward(self, c2w_flat: Tensor) -> Tensor:
        return self.net(c2w_flat)


SHADED_MODES = ("diffuse", "textureless")  # the modes with their own vector (ProlificDreamer: lambertian, textureless)


class VSD(Guidance):
    config: VSDConfig

    def __init__(self, prior: DiffusionPrior, config: VSDConfig = VSDConfig()) -> None:
        from peft import LoraConfig

        super().__init__(prior, config)
        unet = prior.unet
        # A fresh eps_phi for every run: drop the adapter and hook an earlier VSD left on this prior.
        if ADAPTER in getattr(unet, "peft_config", {}):
            unet.delete_adapters(ADAPTER)
        if getattr(unet, "_vsd_camera_hook", None) is not None:
            unet._vsd_camera_hook.remove()
        unet.add_adapter(LoraConfig(r=config.lora_rank, lora_alpha=config.lora_rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS), adapter_name=ADAPTER)
        self.lora_params = [p for n, p in unet.named_parameters() if "lora_" in n]
        for p in self.lora_params:  # train the adapter in float32 even when the prior runs in half precision
            p.data = p.data.float()
            p.requires_grad_(True)
        unet.disable_adapters()
        dim = unet.time_embedding.linear_2.out_features
        self.camera_mlp = CameraEmbedding(dim).to(prior.device)
        self.shading_embedding = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, dim, device=prior.device)) for m in SHADED_MODES})  # [1, D] each
        self._camera_offset: Tensor | None = None
        unet._vsd_camera_hook = unet.time_embedding.register_forward_hook(self._add_camera)
        self.optimiser = torch.optim.AdamW(self.lora_params + list(self.camera_mlp.parameters()) + list(self.shading_embedding.parameters()), lr=config.lr)

    # eps_phi: the prior's UNet with the LoRA on and the camera embedding added to the time embedding.
    def _add_camera(self, module: nn.Module, inputs, output: Tensor) -> Tensor:
        if self._camera_offset is None:
            return output
        return output + self._camera_offset.to(output.dtype)

    @contextmanager
    def _phi(self, cameras_flat: Tensor, shading: str | None = None):
        """eps_phi's condition while inside: the adapter on, camera [B, 16] and shading mode added to the time embedding."""
        self.prior.unet.enable_adapters()
        self._camera_offset = self.camera_mlp(cameras_flat)
        if shading is not None and shading in self.shading_embedding:
            self._camera_offset = self._camera_offset + self.shading_embedding[shading]
        try:
            yield
        finally:
            self._camera_offset = None
            self.prior.unet.disable_adapters()

    def _camera_input(self, ctx: GuidanceContext) -> Tensor:  # [B, 16]
        B = ctx.z.shape[0]
        if ctx.cameras is None:
            return torch.zeros(B, 16, device=self.prior.device)
        return ctx.cameras.c2w.reshape(B, 16).to(self.prior.device, torch.float32)

    @staticmethod
    def _bare(ctx: GuidanceContext) -> list[str]:
        return ctx.plain_prompts if ctx.plain_prompts is not None else ctx.prompts

    def eps_phi(self, z_t: Tensor, t: Tensor, prompts: list[str], cameras_flat: Tensor, shading: str | None = None) -> Tensor:
        """eps_phi(z_t, t, y, c) [B, C, h, w] (converted to eps for v-prediction priors)."""
        with self._phi(cameras_flat, shading):
            return self.prior.predict_noise(z_t, t, self.prior.text_embeddings(prompts)[None])[0]

    def update(self, ctx: GuidanceContext) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.no_grad():
            eps_y, eps_0 = self.prior.predict_noise(ctx.z_t, ctx.t, self.conditions(ctx.prompts), ctx.cameras)  # base weights
            eps_c = cfg(eps_y, eps_0, self.config.guidance_scale)
            eps_p = self.eps_phi(ctx.z_t, ctx.t, self._bare(ctx), self._camera_input(ctx), ctx.shading)
        return ctx.w * (eps_c - eps_p), {}

    def lora_loss(self, z: Tensor, prompts: list[str], cameras_flat: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """|| eps_phi(z', t', y, c) - target ||^2 with z' = alpha_t' z + sigma_t' eps' (target eps', or v').
        Differentiable in the LoRA only while the adapter is on: call it, and its backward, inside `_phi`
        (as `lora_step` does)."""
        prior = self.prior
        z_t = add_noise(prior.alphas_cumprod, z, eps, t)
        if prior.prediction_type == "v_prediction":
            alpha, sigma = alpha_sigma(prior.alphas_cumprod, t)
            target = alpha * eps - sigma * z  # v = alpha_t eps - sigma_t z
        else:
            target = eps
        states = prior.text_embeddings(prompts).to(prior.dtype)
        # A camera-conditioned prior's own camera input says "unknown" in eps_phi (as in `eps_phi`): phi's camera is its MLP's.
        extra = {"class_labels": camera_features(None, z_t.shape[0]).to(prior.device, prior.dtype)} if prior.camera_conditioned else {}
        raw = prior.unet(z_t.to(prior.dtype), t, encoder_hidden_states=states, **extra).sample.float()
        return (raw - target).pow(2).mean()

    def lora_step(self, z: Tensor, prompts: list[str], cameras_flat: Tensor, t: Tensor, eps: Tensor, shading: str | None = None) -> Tensor:
        """One AdamW step of the LoRA, the camera embedding and the shading vector on `lora_loss`; the loss, detached."""
        with self._phi(cameras_flat, shading):  # the adapter stays on through the backward pass (see the module docstring)
            loss = self.lora_loss(z, prompts, cameras_flat, t, eps)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
        return loss.detach()

    def step_auxiliary(self, ctx: GuidanceContext) -> dict[str, Tensor]:
        generator = ctx.generator
        z, prompts, cameras = ctx.z.detach(), self._bare(ctx), self._camera_input(ctx)  # [B, C, h, w], [B], [B, 16]
        k = self.config.lora_batch
        if k is not None and k < z.shape[0]:
            pick = torch.randperm(z.shape[0], generator=generator)[:k]
            z, prompts, cameras = z[to_device(pick, z.device)], [prompts[i] for i in pick.tolist()], cameras[to_device(pick, cameras.device)]
        B = z.shape[0]
        t = to_device(torch.randint(0, self.prior.num_train_timesteps, (B,), generator=generator), self.prior.device)
        eps = to_device(torch.randn(z.shape, generator=generator), self.prior.device)
        keep = float(torch.rand((), generator=generator) >= self.config.camera_dropout)  # one draw for the batch, as both references
        return {"vsd_lora_loss": self.lora_step(z, prompts, cameras * keep, t, eps, ctx.shading)}
