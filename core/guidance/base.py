"""The shape every score-distillation method shares.

A method sees a rendered batch, turns it into the prior's space `z`, draws `t` and `eps`, and produces
an update direction `g` on `z` (METHODS.md). The base class does everything but `g`: each method
implements `update(ctx)` (one fixed hook signature, one context object) and, when it owns auxiliary
trainables (VSD's LoRA, SSD's `mu`, VDM's `M_psi`), steps them itself in `step_auxiliary(ctx)`,
alternating with the 3D update.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..cameras import Cameras
from ..device import to_device
from ..priors.base import DiffusionPrior, add_noise
from .common import Weighting, inject, weight
from .timesteps import TimestepSchedule


@dataclass(frozen=True)
class GuidanceConfig:
    guidance_scale: float = 100.0  # s, the classifier-free guidance scale
    weighting: Weighting = "sds"  # w(t): "sds" = sigma_t^2, or "uniform"
    timesteps: TimestepSchedule = field(default_factory=TimestepSchedule)
    grad_clip: float | None = None  # clamp g elementwise (None: off)
    # The unconditional branch of CFG: eps_cfg = eps_neg + s (eps_y - eps_neg), eps_neg the prediction for
    # this prompt ("" is the plain unconditional eps_0), as threestudio's prompt processor and diffusers'
    # pipelines do. NFSD reads it as its own negative-prompt term instead (nfsd.py).
    negative_prompt: str = ""

    def __post_init__(self) -> None:
        if self.weighting not in ("sds", "uniform"):
            raise ValueError(f"{type(self).__name__}.weighting must be 'sds' or 'uniform', got '{self.weighting}'")
        if not self.guidance_scale >= 0:
            raise ValueError(f"{type(self).__name__}.guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"{type(self).__name__}.grad_clip must be positive or None, got {self.grad_clip}")


@dataclass
class GuidanceContext:
    """Everything a method's hooks may read for one step."""

    images: Tensor  # [B, 3, H, W] rendered, in [0, 1]
    z: Tensor  # [B, C, h, w] the prior's encoding of `images` (carries the renderer's graph)
    z_t: Tensor  # [B, C, h, w] alpha_t z + sigma_t eps (detached)
    t: Tensor  # [B]
    eps: Tensor  # [B, C, h, w]
    w: Tensor  # [B, 1, 1, 1] w(t)
    prompts: list[str]  # [B] with view words (e.g. "a red cube, side view")
    step: int
    steps: int
    cameras: Cameras | None = None
    alpha: Tensor | None = None  # [B, 1, H, W] rendered coverage (SSD masks with it)
    depth: Tensor | None = None  # [B, 1, H, W] rendered depth (SSD)
    generator: torch.Generator | None = None
    # What `update` leaves for `step_auxiliary` (the same step's auxiliary update reuses them, detached):
    eps_cfg: Tensor | None = None  # [B, C, h, w] the classifier-free-guided prediction (VDM's M_psi fits it, SSD's mu)
    control_variate: Tensor | None = None  # [B, C, h, w] SSD's h = eps phi - sigma grad phi
    plain_prompts: list[str] | None = None  # [B] the prompts without view words (VSD's eps_phi); None: `prompts`
    shading: str | None = None  # the step's shading mode (core/shading.py MODES; one per batch); None: unknown


@dataclass
class GuidanceOutput:
    loss: Tensor  # scalar; its gradient with respect to the images is the method's update
    t: Tensor  # [B] timesteps used
    # Diagnostics stay 0-d tensors on the prior's device: reading them (float()) forces a host sync, so
    # a 3D trainer reads them only on the steps it reports progress.
    update_norm: Tensor  # ||g|| per image, averaged over the batch
    losses: dict[str, Tensor] = field(default_factory=dict)  # the method's own diagnostics


class Guidance:
    """Base class: subclasses implement `update` and, if they train something, `step_auxiliary`."""

    def __init__(self, prior: DiffusionPrior, config: GuidanceConfig) -> None:
        self.prior, self.config = prior, config

    def update(self, ctx: GuidanceContext) -> tuple[Tensor, dict[str, Tensor]]:
        """g [B, C, h, w] (no gradient) and diagnostics."""
        raise NotImplementedError

    def step_auxiliary(self, ctx: GuidanceContext) -> dict[str, Tensor]:
        """Train the method's own networks one step; the default method has none."""
        return {}

    def state_dict(self) -> dict:
        """The method's own trainables and optimiser state (for checkpoints); the prior is not included."""
        state: dict = {}
        for name, value in vars(self).items():
            if name == "prior":
                continue
            if isinstance(value, torch.optim.Optimizer):
                state[name] = value.state_dict()
            elif isinstance(value, nn.Module) and any(p.requires_grad for p in value.parameters()):
                state[name] = value.state_dict()
            elif isinstance(value, Tensor) and value.requires_grad:
                state[name] = value.detach().clone()
            elif isinstance(value, list) and value and all(isinstance(v, Tensor) for v in value):
                state[name] = [v.detach().clone() for v in value]
        return state

    def load_state_dict(self, state: dict) -> None:
        for name, saved in state.items():
            value = getattr(self, name)
            if isinstance(value, (torch.optim.Optimizer, nn.Module)):
                value.load_state_dict(saved)
            else:
                with torch.no_grad():
                    for v, s in zip(value if isinstance(value, list) else [value], saved if isinstance(saved, list) else [saved]):
                        v.copy_(s)

    @property
    def unconditional_prompt(self) -> str:
        """The prompt of CFG's unconditional branch: the negative prompt ("" when none is given)."""
        return self.config.negative_prompt

    def conditions(self, prompts: list[str], extra: tuple[str, ...] = ()) -> Tensor:
        """[K, B, L, D] embeddings: the per-image prompts, then the unconditional (negative) prompt, then `extra` prompts."""
        B = len(prompts)
        rows = [self.prior.text_embeddings(prompts), self.prior.text_embeddings([self.unconditional_prompt] * B)]
        rows += [self.prior.text_embeddings([e] * B) for e in extra]
        return torch.stack(rows)

    def context(
        self,
        images: Tensor,  # [B, 3, H, W] in [0, 1], differentiable
        prompts: list[str],  # [B] one prompt per image (view-dependent prompts differ per image)
        step: int,
        steps: int,
        cameras: Cameras | None = None,
        alpha: Tensor | None = None,  # [B, 1, H, W]
        depth: Tensor | None = None,  # [B, 1, H, W]
        generator: torch.Generator | None = None,
        t: Tensor | None = None,  # [B] fixes the timesteps (tests)
        eps: Tensor | None = None,  # [B, C, h, w] fixes the noise (tests)
        plain_prompts: list[str] | None = None,  # [B] without view words
        shading: str | None = None,  # the batch's shading mode
    ) -> GuidanceContext:
        """Encode the images and draw t and eps for one step."""
        if len(prompts) != images.shape[0]:
            raise ValueError(f"guidance needs one prompt per image: got {len(prompts)} prompts for {images.shape[0]} images")
        prior, c = self.prior, self.config
        z = prior.encode(images)
        B = z.shape[0]
        if t is None:
            t = c.timesteps.sample(step, steps, B, prior.num_train_timesteps, generator)
        t = to_device(t, prior.device)
        if eps is None:
            eps = to_device(torch.randn(z.shape, generator=generator), z.device)
        z_t = add_noise(prior.alphas_cumprod, z.detach(), eps, t)
        return GuidanceContext(
            images=images,
            z=z,
            z_t=z_t,
            t=t,
            eps=eps,
            w=weight(prior.alphas_cumprod, t, c.weighting),
            prompts=prompts,
            step=step,
            steps=steps,
            cameras=cameras,
            alpha=alpha,
            depth=depth,
            generator=generator,
            plain_prompts=plain_prompts,
            shading=shading,
        )

    def __call__(self, images: Tensor, prompts: list[str], step: int, steps: int, **kwargs) -> GuidanceOutput:
        """One distillation step: the loss that carries g to the images, then the method's own training step.

        Keyword arguments are those of `context` (cameras, alpha, depth, generator, t, eps, plain_prompts, shading).
        """
        ctx = self.context(images, prompts, step, steps, **kwargs)
        g, losses = self.update(ctx)
        losses.update(self.step_auxiliary(ctx))
        return GuidanceOutput(loss=inject(ctx.z, g, self.config.grad_clip), t=ctx.t, update_norm=g.flatten(1).norm(dim=1).mean(), losses=losses)
